//! The final convergence check: after the faults are healed and the cluster has recovered,
//! every key the test wrote is read from *every* node's own state, and a node whose data
//! differs from the others is a `divergence` violation — replicas that disagree for good, which
//! a linearizability check of client operations may never notice (a client may never read the
//! diverged node).
//!
//! Followers may lag a moment behind; a difference must persist through several rounds of
//! reads (for up to `patience`) to count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::cluster::Cluster;

/// What the convergence check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Convergence {
    /// Keys compared.
    pub keys: usize,
    /// Keys whose value is not the same on every node that answered.
    pub divergent: Vec<Divergence>,
    /// Nodes that could not be read (with why).
    pub unreachable: BTreeMap<String, String>,
    /// Set when the target cannot read a node's own state, so nothing was compared.
    pub skipped: Option<String>,
    /// Each node's own view of its state, when the target reports one.
    pub node_states: BTreeMap<String, Value>,
    /// When every node reports the same applied index but not the same state digest (the
    /// bundled Raft's `/status`), the digests: the replicas applied different commands, even
    /// if no key compared differs now.
    pub digest_mismatch: Option<BTreeMap<String, String>>,
}

/// One key on which replicas disagree.
#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    pub key: String,
    /// The value each node holds.
    pub values: BTreeMap<String, Value>,
}

impl Convergence {
    /// One sentence for people, if anything diverged.
    pub fn sentence(&self) -> Option<String> {
        let Some(first) = self.divergent.first() else {
            let digests = self.digest_mismatch.as_ref()?;
            let shown: Vec<String> = digests.iter().map(|(n, d)| format!("{n} {d}")).collect();
            return Some(format!(
                "divergence: the replicas applied the same number of commands but not the same \
                 ones (state digests {})",
                faultline_checker::text::for_terminal(&shown.join(", "))
            ));
        };
        // Group nodes by the value they hold; the biggest group is "the others".
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (node, v) in &first.values {
            groups.entry(v.to_string()).or_default().push(node);
        }
        let mut groups: Vec<(String, Vec<&str>)> = groups.into_iter().collect();
        groups.sort_by_key(|(_, nodes)| std::cmp::Reverse(nodes.len()));
        let (common, common_nodes) = &groups[0];
        let common_value: Option<Value> = serde_json::from_str(common).ok();
        let odd: Vec<String> = groups[1..]
            .iter()
            .map(|(v, nodes)| {
                let value: Option<Value> = serde_json::from_str(v).ok();
                match (value.as_ref(), common_value.as_ref()) {
                    // Sets: say which elements differ, not two long arrays.
                    (Some(Value::Array(mine)), Some(Value::Array(theirs))) => {
                        let lacks: Vec<String> = theirs
                            .iter()
                            .filter(|x| !mine.contains(x))
                            .map(|x| x.to_string())
                            .collect();
                        let extra: Vec<String> = mine
                            .iter()
                            .filter(|x| !theirs.contains(x))
                            .map(|x| x.to_string())
                            .collect();
                        let mut parts = Vec::new();
                        if !lacks.is_empty() {
                            parts.push(format!("lacks {}", show(&lacks.join(", "))));
                        }
                        if !extra.is_empty() {
                            parts.push(format!("has {} too", show(&extra.join(", "))));
                        }
                        format!("{} {}", nodes.join(", "), parts.join(" and "))
                    }
                    _ => format!("{} {} {}", nodes.join(", "), holds(nodes.len()), show(v)),
                }
            })
            .collect();
        let more = match self.divergent.len() {
            1 => String::new(),
            n => format!(" ({n} keys differ)"),
        };
        let theirs = match common_value {
            Some(Value::Array(_)) => format!(
                "{} {}",
                common_nodes.join(", "),
                if common_nodes.len() == 1 {
                    "does"
                } else {
                    "do"
                }
            ),
            _ => format!(
                "{} {} {}",
                common_nodes.join(", "),
                holds(common_nodes.len()),
                show(common)
            ),
        };
        Some(format!(
            "divergence: for key {}, {} while {theirs}{more}",
            faultline_checker::text::for_terminal(&first.key),
            odd.join(" and "),
        ))
    }
}

fn holds(n: usize) -> &'static str {
    if n == 1 {
        "holds"
    } else {
        "hold"
    }
}

fn show(json: &str) -> String {
    faultline_checker::text::abbreviate(&faultline_checker::text::for_terminal(json), 80)
}

/// Reads `keys` from every node until they agree or `patience` runs out.
pub async fn check(cluster: &Arc<Cluster>, keys: &[String], patience: Duration) -> Convergence {
    let deadline = Instant::now() + patience;
    let mut result = Convergence {
        keys: keys.len(),
        ..Convergence::default()
    };
    loop {
        let mut by_node: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for node in &cluster.nodes {
            let cluster = cluster.clone();
            let name = node.name.clone();
            let keys = keys.to_vec();
            tasks.spawn(async move {
                let mut values = BTreeMap::new();
                for key in keys {
                    match cluster.client.local_read(&name, &key).await {
                        Ok(Some(v)) => {
                            values.insert(key, v);
                        }
                        Ok(None) => return (name, Err(None)),
                        Err(e) => return (name, Err(Some(e))),
                    }
                }
                (name, Ok(values))
            });
        }
        result.unreachable.clear();
        while let Some(joined) = tasks.join_next().await {
            let Ok((node, outcome)) = joined else {
                continue;
            };
            match outcome {
                Ok(values) => {
                    by_node.insert(node, values);
                }
                Err(None) => {
                    result.skipped = Some("the target cannot read a node's own state".to_string());
                    return result;
                }
                Err(Some(e)) => {
                    result.unreachable.insert(node, e);
                }
            }
        }
        result.divergent = keys
            .iter()
            .filter_map(|key| {
                let values: BTreeMap<String, Value> = by_node
                    .iter()
                    .filter_map(|(node, vals)| Some((node.clone(), vals.get(key)?.clone())))
                    .collect();
                let first = values.values().next()?;
                values.values().any(|v| v != first).then(|| Divergence {
                    key: key.clone(),
                    values,
                })
            })
            .collect();
        if result.divergent.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for node in &cluster.nodes {
        if let Some(state) = cluster.node_state(node).await {
            result.node_states.insert(node.name.clone(), state);
        }
    }
    result.digest_mismatch = digest_mismatch(&result.node_states);
    result
}

/// Digests of nodes at one applied index, if they are not all equal.
fn digest_mismatch(states: &BTreeMap<String, Value>) -> Option<BTreeMap<String, String>> {
    let mut index = None;
    let mut digests = BTreeMap::new();
    for (node, s) in states {
        let applied = s.get("applied_index")?.as_u64()?;
        let digest = s.get("state_digest")?.as_str()?;
        if *index.get_or_insert(applied) != applied {
            return None; // not comparable: a node is behind
        }
        digests.insert(node.clone(), digest.to_string());
    }
    let first = digests.values().next()?;
    digests.values().any(|d| d != first).then_some(digests)
}
