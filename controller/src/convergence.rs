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
    /// Each member's state fingerprint and whether they agree (see [`Fingerprints`]).
    pub fingerprints: Fingerprints,
}

/// One member's fingerprint: where it is (its applied index) and what its replicated state
/// is there, in the target's own terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// The member's applied index: the bundled Raft's, etcd's `raftAppliedIndex`, Consul's
    /// KV index, a custom target's `position`.
    pub position: u64,
    /// What is compared at that position, by name: "state digest" (bundled Raft), "revision"
    /// and "HashKV" or "Hash" (etcd), "KV digest" (Consul), "fingerprint" (custom).
    pub values: BTreeMap<String, String>,
}

/// The replicas' fingerprints, compared. Two members at the same position must have the same
/// fingerprint: a difference is a `divergence` even when every key read agrees (replicas that
/// applied different commands, or the same commands to different data).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Fingerprints {
    pub members: BTreeMap<String, Fingerprint>,
    /// Whether the fingerprints were compared (all members at one position).
    pub compared: bool,
    /// What was compared: the fields every member reported.
    pub compared_fields: Vec<String>,
    /// Every member answered with every field any member gave.
    pub complete: bool,
    /// Why not, or what the comparison left out.
    pub note: Option<String>,
    /// Members whose fingerprint differs from the largest group's, when compared (all of
    /// them when no group is largest).
    pub differ: Vec<String>,
}

impl Fingerprints {
    /// Compares `members` (see the type's documentation). `silent` are members that gave no
    /// fingerprint (they are named in the note).
    pub fn compare(members: BTreeMap<String, Fingerprint>, silent: &[String]) -> Fingerprints {
        let mut f = Fingerprints {
            members,
            ..Fingerprints::default()
        };
        let mut notes = Vec::new();
        if !silent.is_empty() {
            notes.push(format!("no fingerprint from {}", and_list(silent)));
        }
        if f.members.len() < 2 {
            notes.push(format!(
                "{} member(s) reported a fingerprint: nothing to compare",
                f.members.len()
            ));
            f.note = Some(notes.join("; "));
            return f;
        }
        let positions: std::collections::BTreeSet<u64> =
            f.members.values().map(|m| m.position).collect();
        if positions.len() > 1 {
            let shown: Vec<String> = f
                .members
                .iter()
                .map(|(n, m)| format!("{n} {}", m.position))
                .collect();
            notes.push(format!(
                "not compared: the members stayed at different applied indexes ({})",
                shown.join(", ")
            ));
            f.note = Some(notes.join("; "));
            return f;
        }
        // Only what every member gave: a field one member could not give (a HashKV call that
        // timed out) is missing, not different.
        let mut fields: Vec<String> = f
            .members
            .values()
            .next()
            .map(|m| m.values.keys().cloned().collect())
            .unwrap_or_default();
        fields.retain(|k| f.members.values().all(|m| m.values.contains_key(k)));
        for (node, m) in &f.members {
            let missing: Vec<&str> = m
                .values
                .keys()
                .chain(f.members.values().flat_map(|o| o.values.keys()))
                .filter(|k| !m.values.contains_key(*k))
                .map(String::as_str)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !missing.is_empty() {
                notes.push(format!("{node} gave no {}", missing.join(" or ")));
            }
        }
        f.complete = notes.is_empty();
        if fields.is_empty() {
            notes.push("not compared: no field every member gave".to_string());
        }
        f.note = (!notes.is_empty()).then(|| notes.join("; "));
        if fields.is_empty() {
            return f;
        }
        f.compared = true;
        f.compared_fields = fields;
        let groups = groups(&f.members, &f.compared_fields);
        let tie = groups.len() > 1 && groups[0].1.len() == groups[1].1.len();
        f.differ = groups[usize::from(!tie)..]
            .iter()
            .flat_map(|(_, nodes)| nodes.iter().cloned())
            .collect();
        f
    }

    /// The divergence sentence, if members at one position disagree: "n3 at applied index
    /// 29464 has revision 24514, n1 and n2 have 24516; their HashKV differ".
    pub fn sentence(&self) -> Option<String> {
        if !self.compared || self.differ.is_empty() {
            return None;
        }
        let groups = groups(&self.members, &self.compared_fields);
        let position = self.members.values().next()?.position;
        let show = |v: Option<&String>| v.map_or("nothing".to_string(), |v| show(v));
        if groups[0].1.len() == groups.get(1).map_or(0, |g| g.1.len()) {
            // No majority to call "the others": list every group.
            let parts: Vec<String> = groups
                .iter()
                .map(|(values, nodes)| {
                    let shown: Vec<String> = values
                        .iter()
                        .map(|(k, v)| format!("{k} {}", show(Some(v))))
                        .collect();
                    format!("{} {}", and_list(nodes), shown.join(", "))
                })
                .collect();
            return Some(format!(
                "divergence: the members at applied index {position} disagree: {}",
                faultline_checker::text::for_terminal(&parts.join("; "))
            ));
        }
        let (common_values, common_nodes) = &groups[0];
        let mut parts = Vec::new();
        for (values, nodes) in &groups[1..] {
            // Name the first field that differs with both values, the others by name only.
            let differing: Vec<&String> = self
                .compared_fields
                .iter()
                .filter(|k| values.get(*k) != common_values.get(*k))
                .collect();
            let Some(first) = differing
                .iter()
                .find(|k| k.as_str() == "revision")
                .or(differing.first())
            else {
                continue;
            };
            let mut part = format!(
                "{} at applied index {position} {} {first} {}, {} {} {}",
                and_list(nodes),
                if nodes.len() == 1 { "has" } else { "have" },
                show(values.get(*first)),
                and_list(common_nodes),
                if common_nodes.len() == 1 {
                    "has"
                } else {
                    "have"
                },
                show(common_values.get(*first)),
            );
            let others: Vec<&str> = differing
                .iter()
                .filter(|k| **k != *first)
                .map(|k| k.as_str())
                .collect();
            if !others.is_empty() {
                part.push_str(&format!("; their {} differ", others.join(" and ")));
            }
            parts.push(part);
        }
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "divergence: {}",
            faultline_checker::text::for_terminal(&parts.join("; "))
        ))
    }
}

/// "n1", "n1 and n2", "n1, n2 and n3".
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Members grouped by their values of `fields`, the largest group first (ties: by name).
fn groups(
    members: &BTreeMap<String, Fingerprint>,
    fields: &[String],
) -> Vec<(BTreeMap<String, String>, Vec<String>)> {
    let mut groups: Vec<(BTreeMap<String, String>, Vec<String>)> = Vec::new();
    for (node, m) in members {
        let values: BTreeMap<String, String> = m
            .values
            .iter()
            .filter(|(k, _)| fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match groups.iter_mut().find(|(v, _)| *v == values) {
            Some((_, nodes)) => nodes.push(node.clone()),
            None => groups.push((values, vec![node.clone()])),
        }
    }
    groups.sort_by_key(|(_, nodes)| std::cmp::Reverse(nodes.len()));
    groups
}

/// A member's fingerprint from its reported state (`node_state`), in whichever target's
/// terms it comes: the bundled Raft's `/status` (`applied_index`, `state_digest`), etcd's
/// (`raft_applied_index`, `revision`, `hash` of kind `hashkv` or `hash`), Consul's
/// (`kv_index`, `kv_digest`), or a custom target's (`position` or `applied_index`, and
/// `fingerprint`).
pub fn fingerprint_of(state: &Value) -> Option<Fingerprint> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut values = BTreeMap::new();
    let position;
    if let Some(applied) = state.get("raft_applied_index").and_then(Value::as_u64) {
        // etcd: the revision, and the hash where the member gave one.
        position = applied;
        if let Some(r) = state.get("revision").and_then(text) {
            values.insert("revision".to_string(), r);
        }
        if let Some(h) = state.get("hash").and_then(text) {
            let kind = match state.get("hash_kind").and_then(Value::as_str) {
                Some("hashkv") => "HashKV",
                _ => "Hash",
            };
            values.insert(kind.to_string(), h);
        }
    } else if let Some(digest) = state.get("kv_digest").and_then(text) {
        position = state.get("kv_index").and_then(Value::as_u64)?;
        values.insert("KV digest".to_string(), digest);
    } else if let Some(digest) = state.get("state_digest").and_then(text) {
        position = state.get("applied_index").and_then(Value::as_u64)?;
        values.insert("state digest".to_string(), digest);
    } else {
        let print = state.get("fingerprint").and_then(text)?;
        position = state
            .get("position")
            .or_else(|| state.get("applied_index"))
            .and_then(Value::as_u64)?;
        values.insert("fingerprint".to_string(), print);
    }
    if values.is_empty() {
        return None;
    }
    Some(Fingerprint { position, values })
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
            return self.fingerprints.sentence();
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
    // Fingerprints at a common point: with the traffic over, members reach the same applied
    // index within moments; read again (up to a few seconds more) until they do. A difference
    // counts only when two reads in a row show it at the same applied index: a member's
    // report is not always one snapshot (etcd reads the revision, then the applied index), so
    // one read can straddle an entry being applied.
    let deadline = deadline.max(Instant::now() + Duration::from_secs(5));
    // Where a difference was seen, and between whom: the next read must show the same.
    let mut differed: Option<(Option<u64>, Vec<String>)> = None;
    loop {
        result.node_states.clear();
        let mut members = BTreeMap::new();
        let mut silent = Vec::new();
        for node in &cluster.nodes {
            match cluster.fingerprint_state(node).await {
                Some(state) => {
                    match fingerprint_of(&state) {
                        Some(f) => {
                            members.insert(node.name.clone(), f);
                        }
                        None => silent.push(node.name.clone()),
                    }
                    result.node_states.insert(node.name.clone(), state);
                }
                None => silent.push(node.name.clone()),
            }
        }
        let f = Fingerprints::compare(members, &silent);
        let position = f.members.values().next().map(|m| m.position);
        // After a difference, agreement counts only from a complete read: one that left out
        // the member or the field that differed proves nothing.
        let settled = match (f.compared, f.differ.is_empty()) {
            (false, _) => f.members.len() < 2 && differed.is_none(),
            (true, true) => differed.is_none() || f.complete,
            (true, false) => {
                let now = (position, f.differ.clone());
                let confirmed = differed.as_ref() == Some(&now);
                differed = Some(now);
                confirmed
            }
        };
        result.fingerprints = f;
        if settled {
            break;
        }
        if Instant::now() >= deadline {
            let f = &mut result.fingerprints;
            if !f.differ.is_empty() {
                // Seen once, never confirmed: not a finding, but said.
                let said = format!(
                    "a difference ({}) seen in one read was not seen again before the \
                     deadline: not counted",
                    f.differ.join(", ")
                );
                f.note = Some(match f.note.take() {
                    Some(n) => format!("{n}; {said}"),
                    None => said,
                });
                f.differ.clear();
                f.compared = false;
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn members(states: &[(&str, Value)]) -> BTreeMap<String, Fingerprint> {
        states
            .iter()
            .filter_map(|(n, s)| Some((n.to_string(), fingerprint_of(s)?)))
            .collect()
    }

    fn etcd(rev: u64, hash: u64) -> Value {
        json!({"raft_applied_index": 29464, "revision": rev, "hash": hash, "hash_kind": "hashkv"})
    }

    #[test]
    fn etcd_members_at_one_applied_index_with_another_revision_diverge() {
        let f = Fingerprints::compare(
            members(&[
                ("n1", etcd(24516, 7)),
                ("n2", etcd(24516, 7)),
                ("n3", etcd(24514, 9)),
            ]),
            &[],
        );
        assert!(f.compared);
        assert_eq!(f.differ, vec!["n3"]);
        assert_eq!(
            f.sentence().unwrap(),
            "divergence: n3 at applied index 29464 has revision 24514, n1 and n2 have 24516; \
             their HashKV differ"
        );
        // Agreement: no sentence.
        let same = Fingerprints::compare(members(&[("n1", etcd(1, 2)), ("n2", etcd(1, 2))]), &[]);
        assert!(same.compared && same.sentence().is_none());
    }

    #[test]
    fn a_field_a_member_could_not_give_is_missing_not_different() {
        let mut no_hash = etcd(24516, 0);
        no_hash.as_object_mut().unwrap().remove("hash");
        let f = Fingerprints::compare(
            members(&[
                ("n1", etcd(24516, 7)),
                ("n2", etcd(24516, 7)),
                ("n3", no_hash),
            ]),
            &["n4".to_string()],
        );
        assert!(f.compared, "{f:?}");
        assert_eq!(f.compared_fields, vec!["revision"]);
        assert!(f.differ.is_empty() && f.sentence().is_none());
        let note = f.note.unwrap();
        assert!(
            note.contains("n3 gave no HashKV") && note.contains("no fingerprint from n4"),
            "{note}"
        );
    }

    #[test]
    fn members_at_different_positions_are_not_compared_and_a_tie_blames_no_one() {
        let raft = |applied: u64, d: &str| json!({"applied_index": applied, "state_digest": d});
        let f = Fingerprints::compare(
            members(&[("n1", raft(10, "a")), ("n2", raft(12, "b"))]),
            &[],
        );
        assert!(!f.compared);
        assert!(f.note.unwrap().contains("n1 10, n2 12"));
        // Two members, one each: neither is "the others".
        let f = Fingerprints::compare(
            members(&[("n1", raft(12, "a")), ("n2", raft(12, "b"))]),
            &[],
        );
        assert_eq!(f.differ, vec!["n1", "n2"]);
        assert_eq!(
            f.sentence().unwrap(),
            "divergence: the members at applied index 12 disagree: n1 state digest a; n2 state \
             digest b"
        );
    }

    #[test]
    fn each_target_s_state_gives_its_fingerprint() {
        let consul = fingerprint_of(&json!({"kv_index": 40, "kv_digest": "ab12", "kv_keys": 3}));
        assert_eq!(consul.unwrap().position, 40);
        let custom = fingerprint_of(&json!({"position": 5, "fingerprint": "x"})).unwrap();
        assert_eq!(custom.values["fingerprint"], "x");
        let etcd34 = fingerprint_of(
            &json!({"raft_applied_index": 9, "revision": 4, "hash": 77, "hash_kind": "hash"}),
        )
        .unwrap();
        assert_eq!(etcd34.values["Hash"], "77");
        assert!(fingerprint_of(&json!({"role": "leader"})).is_none());
    }
}
