//! What a node says of its own place in the cluster: its role, its term, and whom it believes
//! leads. Every target reports it its own way (the bundled Raft's and http-kv's `GET /status`,
//! the exec protocol's `status` request, etcd's `raft.status`, Consul's `agent/self`); this
//! module turns each into one [`RoleReport`], so the controller can sample roles, draw them, check
//! that no two nodes ever led the same term, and aim faults at the leader without knowing the
//! target.

use serde::Serialize;
use serde_json::Value;

use crate::NodeSpec;

/// One node's answer about itself, at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleReport {
    /// `leader`, `follower`, `candidate`, `pre-candidate`, or whatever else the target says
    /// (lower-cased).
    pub role: String,
    /// The node's current term (Raft term, Paxos ballot, epoch...), if it reports one.
    pub term: Option<u64>,
    /// The node the reporting node believes leads (a faultline node name when it could be
    /// matched, else `id <what the target said>`).
    pub leader: Option<String>,
    /// Whether role and term were read together, in one consistent snapshot of the node's
    /// state. Two fields read one after the other can mix an old role with a new term (a
    /// leader that is stepping down reads as "leader" of the term that deposed it), so a
    /// claim from such a report must be confirmed before it counts as evidence of two leaders
    /// in one term.
    pub consistent: bool,
}

impl RoleReport {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// Reads the http-kv / exec status object: `{"role": "leader", "term": 3, "leader": 2}` (other
/// fields ignored). `leader` may be a node id (matched against `{id}`), a faultline node name,
/// or null. `None` when there is no role string.
pub fn from_status_json(v: &Value, nodes: &[NodeSpec]) -> Option<RoleReport> {
    let role = v.get("role")?.as_str()?.trim().to_ascii_lowercase();
    if role.is_empty() {
        return None;
    }
    let term = v.get("term").and_then(as_u64);
    let leader = match v.get("leader") {
        None | Some(Value::Null) => None,
        Some(l) => Some(node_named(l, nodes)),
    };
    Some(RoleReport {
        role,
        term,
        leader,
        consistent: true,
    })
}

/// A leader reference as a node name: an integer (or digit string) that is a node's `id`, or a
/// string that is a node's name; anything else as `id <value>`.
fn node_named(v: &Value, nodes: &[NodeSpec]) -> String {
    if let Some(id) = as_u64(v) {
        if let Some(n) = nodes.iter().find(|n| n.id == id) {
            return n.name.clone();
        }
    }
    if let Some(s) = v.as_str() {
        if let Some(n) = nodes.iter().find(|n| n.name == s) {
            return n.name.clone();
        }
        return format!("id {}", crate::sanitize(s, 40));
    }
    format!("id {}", crate::sanitize(&v.to_string(), 40))
}

/// A non-negative integer given as a number or as a string of digits (64-bit fields are
/// strings in etcd's and Consul's JSON).
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// etcd's raft state names (`StateLeader`, ...) as roles.
pub fn etcd_role(state: &str) -> String {
    match state {
        "StateLeader" => "leader".to_string(),
        "StateFollower" => "follower".to_string(),
        "StateCandidate" => "candidate".to_string(),
        "StatePreCandidate" => "pre-candidate".to_string(),
        other => other
            .strip_prefix("State")
            .unwrap_or(other)
            .to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes() -> Vec<NodeSpec> {
        (1..=3)
            .map(|i| NodeSpec {
                name: format!("n{i}"),
                id: i,
                client_addr: format!("127.0.0.1:{}", 7000 + i).parse().unwrap(),
                peer_addr: format!("127.0.0.1:{}", 8000 + i).parse().unwrap(),
                data_dir: std::env::temp_dir(),
                log_path: std::env::temp_dir().join("log"),
            })
            .collect()
    }

    #[test]
    fn status_objects_become_reports_with_node_names() {
        let r =
            from_status_json(&json!({"role": "Leader", "term": 4, "leader": 2}), &nodes()).unwrap();
        assert_eq!(r.role, "leader");
        assert_eq!(r.term, Some(4));
        assert_eq!(r.leader.as_deref(), Some("n2"));
        let r = from_status_json(
            &json!({"role": "follower", "term": "7", "leader": "n3"}),
            &nodes(),
        )
        .unwrap();
        assert_eq!((r.term, r.leader.as_deref()), (Some(7), Some("n3")));
        let r = from_status_json(&json!({"role": "candidate", "leader": 9}), &nodes()).unwrap();
        assert_eq!((r.term, r.leader.as_deref()), (None, Some("id 9")));
        assert!(from_status_json(&json!({"term": 3}), &nodes()).is_none());
        assert!(from_status_json(&json!({"role": 3}), &nodes()).is_none());
        assert!(from_status_json(&json!([1]), &nodes()).is_none());
    }

    #[test]
    fn etcd_states_become_roles() {
        assert_eq!(etcd_role("StateLeader"), "leader");
        assert_eq!(etcd_role("StatePreCandidate"), "pre-candidate");
        assert_eq!(etcd_role("StateLearner"), "learner");
    }
}
