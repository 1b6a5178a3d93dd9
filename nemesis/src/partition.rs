//! Jepsen's partition catalogue, as grudges: for each node, the nodes it cannot hear from.
//! The same grudge is applied by either network backend (nftables in namespaces, or the
//! userspace proxy), and recorded in the history exactly.

use std::fmt;
use std::str::FromStr;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::net::Grudge;

/// A shape of partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    /// One random node cut off from all others.
    IsolateOne,
    /// The current leader cut off from all others.
    IsolateLeader,
    /// A random minority and the majority cannot hear each other.
    Halves,
    /// Each node hears a majority (itself included), and no two nodes hear the same one.
    MajoritiesRing,
    /// Two halves that cannot hear each other, both hearing one bridge node.
    Bridge,
    /// One node's packets to every other node are dropped; theirs to it are delivered.
    OneWay,
}

impl PartitionKind {
    pub const ALL: &'static [PartitionKind] = &[
        PartitionKind::IsolateOne,
        PartitionKind::IsolateLeader,
        PartitionKind::Halves,
        PartitionKind::MajoritiesRing,
        PartitionKind::Bridge,
        PartitionKind::OneWay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PartitionKind::IsolateOne => "isolate-one",
            PartitionKind::IsolateLeader => "isolate-leader",
            PartitionKind::Halves => "halves",
            PartitionKind::MajoritiesRing => "majorities-ring",
            PartitionKind::Bridge => "bridge",
            PartitionKind::OneWay => "one-way",
        }
    }
}

impl fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PartitionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PartitionKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PartitionKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown partition {s:?}; the partitions are: {}",
                    names.join(", ")
                )
            })
    }
}

/// Builds the grudge of `kind` over `nodes` (in their given order), choosing at random with
/// `rng`. `leader` is used by [`PartitionKind::IsolateLeader`] (a random node when unknown).
pub fn grudge(
    kind: PartitionKind,
    nodes: &[String],
    leader: Option<&str>,
    rng: &mut ChaCha8Rng,
) -> Grudge {
    let n = nodes.len();
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    let name = |i: usize| nodes[i].clone();
    let mut g = Grudge::new();
    if n < 2 {
        return g;
    }
    // Cut a from b both ways.
    let cut = |g: &mut Grudge, a: &[usize], b: &[usize]| {
        for &x in a {
            for &y in b {
                g.entry(name(x)).or_default().push(name(y));
                g.entry(name(y)).or_default().push(name(x));
            }
        }
    };
    match kind {
        PartitionKind::IsolateOne | PartitionKind::IsolateLeader => {
            let victim = match (kind, leader.and_then(|l| nodes.iter().position(|x| x == l))) {
                (PartitionKind::IsolateLeader, Some(l)) => l,
                _ => order[0],
            };
            let rest: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
            cut(&mut g, &[victim], &rest);
        }
        PartitionKind::Halves => {
            let minority = n / 2;
            cut(&mut g, &order[..minority], &order[minority..]);
        }
        PartitionKind::Bridge => {
            // order[0] is the bridge; the rest split in two.
            let rest = &order[1..];
            let half = rest.len() / 2;
            cut(&mut g, &rest[..half], &rest[half..]);
        }
        PartitionKind::MajoritiesRing => {
            // Around a random ring, each node hears the nodes within distance `reach`.
            let majority = n / 2 + 1;
            let reach = (majority - 1) / 2;
            for (pos, &x) in order.iter().enumerate() {
                for (other_pos, &y) in order.iter().enumerate() {
                    if x == y {
                        continue;
                    }
                    let d = (pos + n - other_pos) % n;
                    let ring_distance = d.min(n - d);
                    let hears = if 2 * reach + 1 >= majority && n > 4 {
                        ring_distance <= reach
                    } else {
                        // Small clusters: hear the next majority-1 nodes clockwise (so each
                        // node still hears a majority, and no two the same one).
                        (other_pos + n - pos) % n < majority
                    };
                    if !hears {
                        g.entry(name(x)).or_default().push(name(y));
                    }
                }
            }
        }
        PartitionKind::OneWay => {
            let talker = order[0];
            for i in (0..n).filter(|&i| i != talker) {
                g.entry(name(i)).or_default().push(name(talker));
            }
        }
    }
    for blocked in g.values_mut() {
        blocked.sort_by_key(|b| nodes.iter().position(|x| x == b));
        blocked.dedup();
    }
    g
}

fn shuffle(v: &mut [usize], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn hears(g: &Grudge, a: &str, b: &str) -> bool {
        !g.get(a)
            .is_some_and(|blocked| blocked.iter().any(|x| x == b))
    }

    #[test]
    fn catalogue_shapes() {
        let ns = nodes(5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let g = grudge(PartitionKind::IsolateLeader, &ns, Some("n3"), &mut rng);
        for other in ["n1", "n2", "n4", "n5"] {
            assert!(!hears(&g, "n3", other) && !hears(&g, other, "n3"));
        }
        assert!(hears(&g, "n1", "n2"));

        let g = grudge(PartitionKind::Halves, &ns, None, &mut rng);
        let cut_off: Vec<&String> = ns
            .iter()
            .filter(|n| g.get(*n).is_some_and(|b| b.len() == 3))
            .collect();
        assert_eq!(cut_off.len(), 2, "{g:?}"); // the minority cannot hear the 3 others

        let g = grudge(PartitionKind::MajoritiesRing, &ns, None, &mut rng);
        let mut seen = std::collections::BTreeSet::new();
        for n in &ns {
            let heard: Vec<&String> = ns.iter().filter(|m| *m == n || hears(&g, n, m)).collect();
            assert_eq!(heard.len(), 3, "{n} hears {heard:?}");
            assert!(seen.insert(heard.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        }

        let g = grudge(PartitionKind::Bridge, &ns, None, &mut rng);
        let bridge: Vec<&String> = ns.iter().filter(|n| !g.contains_key(*n)).collect();
        assert_eq!(bridge.len(), 1, "{g:?}");
        for n in &ns {
            assert!(hears(&g, n, bridge[0]));
        }

        let g = grudge(PartitionKind::OneWay, &ns, None, &mut rng);
        let talker: Vec<&String> = ns.iter().filter(|n| !g.contains_key(*n)).collect();
        assert_eq!(talker.len(), 1);
        for n in ns.iter().filter(|n| *n != talker[0]) {
            assert!(!hears(&g, n, talker[0]) && hears(&g, talker[0], n));
        }
    }

    #[test]
    fn majorities_ring_on_three_nodes_still_gives_each_a_majority() {
        let ns = nodes(3);
        let g = grudge(
            PartitionKind::MajoritiesRing,
            &ns,
            None,
            &mut ChaCha8Rng::seed_from_u64(2),
        );
        let mut majorities = std::collections::BTreeSet::new();
        for n in &ns {
            let heard: Vec<String> = ns
                .iter()
                .filter(|m| *m == n || hears(&g, n, m))
                .cloned()
                .collect();
            assert_eq!(heard.len(), 2);
            majorities.insert(heard);
        }
        assert_eq!(majorities.len(), 3);
    }
}
