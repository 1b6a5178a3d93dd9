//! The `election` check: what the nodes said of their own roles, sampled during the run
//! (`nodes/status.jsonl`), judged against Raft's Election Safety property — at most one leader
//! per term, ever (Ongaro & Ousterhout, §5.2, Figure 3). Two nodes that each claimed to lead
//! the same term is a safety violation whether or not any client noticed: the two may have
//! accepted different entries at the same index, which is how split brain loses data.
//!
//! Leaders of *different* terms at the same time are normal for a while (an old leader that
//! has not yet heard of its successor still believes it leads): they are recorded, with how
//! long they overlapped, but are not a violation.
//!
//! # Data
//! A *tenure* is a run of consecutive leader claims of one node in one term, from its first
//! sample to its last. Tenures are only as precise as the sampling (every 50 ms): a tenure
//! shorter than that may be missed, and overlaps are lower bounds.
//!
//! A claim from a report whose role and term were read separately (`"consistent": false`:
//! Consul, or etcd without `/debug/vars`) could pair an old role with a new term, so a tenure
//! made of such claims counts as evidence only once two consecutive samples agree.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// One line of `status.jsonl`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub time_ns: u64,
    pub node: String,
    /// `None`: the node did not answer.
    pub role: Option<String>,
    pub term: Option<u64>,
    pub leader: Option<String>,
    /// Role and term were read together (see `RoleReport::consistent`).
    pub consistent: bool,
}

/// Reads `status.jsonl`; unreadable lines are counted into the returned note, not fatal (the
/// sampler may have been killed mid-line).
pub fn read_samples(path: &Path) -> (Vec<Sample>, Option<String>) {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), None),
        Err(e) => {
            return (
                Vec::new(),
                Some(format!("cannot read {}: {e}", path.display())),
            )
        }
    };
    let mut samples = Vec::new();
    let mut bad = 0usize;
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else {
            bad += 1;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            bad += 1;
            continue;
        };
        let (Some(time_ns), Some(node)) = (
            v.get("time").and_then(Value::as_u64),
            v.get("node").and_then(Value::as_str),
        ) else {
            bad += 1;
            continue;
        };
        samples.push(Sample {
            time_ns,
            node: node.to_string(),
            role: v.get("role").and_then(Value::as_str).map(str::to_string),
            term: v.get("term").and_then(Value::as_u64),
            leader: v.get("leader").and_then(Value::as_str).map(str::to_string),
            consistent: v.get("consistent").and_then(Value::as_bool).unwrap_or(true),
        });
    }
    samples.sort_by_key(|s| s.time_ns);
    let note = (bad > 0).then(|| format!("{}: {bad} unreadable line(s) skipped", path.display()));
    (samples, note)
}

/// A node's uninterrupted claim to lead one term.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tenure {
    pub node: String,
    pub term: Option<u64>,
    pub from_ns: u64,
    pub to_ns: u64,
    pub samples: usize,
    /// Counts as evidence: from a consistent report, or seen in two samples in a row.
    pub confirmed: bool,
}

/// Every tenure in the samples, in order of first sample.
pub fn tenures(samples: &[Sample]) -> Vec<Tenure> {
    let mut open: BTreeMap<&str, Tenure> = BTreeMap::new();
    let mut done = Vec::new();
    for s in samples {
        let leads = s.role.as_deref() == Some("leader");
        let continues = open
            .get(s.node.as_str())
            .is_some_and(|t| leads && t.term == s.term);
        if continues {
            if let Some(t) = open.get_mut(s.node.as_str()) {
                t.to_ns = s.time_ns;
                t.samples += 1;
                t.confirmed |= s.consistent || t.samples >= 2;
            }
            continue;
        }
        if let Some(t) = open.remove(s.node.as_str()) {
            done.push(t);
        }
        if leads {
            open.insert(
                s.node.as_str(),
                Tenure {
                    node: s.node.clone(),
                    term: s.term,
                    from_ns: s.time_ns,
                    to_ns: s.time_ns,
                    samples: 1,
                    confirmed: s.consistent,
                },
            );
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|t| (t.from_ns, t.node.clone()));
    done
}

/// Two nodes leading one term.
#[derive(Clone, Debug, Serialize)]
pub struct SameTerm {
    pub term: u64,
    pub leaders: Vec<Tenure>,
}

/// Two nodes leading different terms at the same time.
#[derive(Clone, Debug, Serialize)]
pub struct Overlap {
    pub nodes: [String; 2],
    pub terms: [Option<u64>; 2],
    pub from_ns: u64,
    pub to_ns: u64,
    pub duration_ms: f64,
}

/// The election check's findings.
#[derive(Clone, Debug, Serialize)]
pub struct ElectionReport {
    /// `valid`, `invalid`, or `skipped` (the target reports no roles or no terms).
    pub verdict: &'static str,
    pub explanation: Vec<String>,
    /// Distinct (node, term) leaderships seen.
    pub leaderships: usize,
    pub same_term: Vec<SameTerm>,
    pub overlaps: Vec<Overlap>,
    /// The longest overlap, in milliseconds.
    pub longest_overlap_ms: f64,
    pub sample_interval_ms: f64,
}

/// Judges the samples.
pub fn check(samples: &[Sample], sample_interval_ms: f64) -> ElectionReport {
    let all = tenures(samples);
    let mut by_term: BTreeMap<u64, Vec<Tenure>> = BTreeMap::new();
    for t in all.iter().filter(|t| t.confirmed) {
        if let Some(term) = t.term {
            by_term.entry(term).or_default().push(t.clone());
        }
    }
    let mut same_term = Vec::new();
    for (term, tenures) in by_term {
        let mut nodes: Vec<&str> = tenures.iter().map(|t| t.node.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() > 1 {
            same_term.push(SameTerm {
                term,
                leaders: tenures,
            });
        }
    }
    let mut overlaps = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if a.node == b.node || (a.term.is_some() && a.term == b.term) {
                continue;
            }
            let (from, to) = (a.from_ns.max(b.from_ns), a.to_ns.min(b.to_ns));
            if from <= to {
                overlaps.push(Overlap {
                    nodes: [a.node.clone(), b.node.clone()],
                    terms: [a.term, b.term],
                    from_ns: from,
                    to_ns: to,
                    duration_ms: (to - from) as f64 / 1e6,
                });
            }
        }
    }
    overlaps.sort_by_key(|o| o.from_ns);
    let longest_overlap_ms = overlaps.iter().map(|o| o.duration_ms).fold(0.0, f64::max);
    let mut leaderships: Vec<(&str, Option<u64>)> =
        all.iter().map(|t| (t.node.as_str(), t.term)).collect();
    leaderships.sort_unstable();
    leaderships.dedup();
    let any_role = samples.iter().any(|s| s.role.is_some());
    let any_term = all.iter().any(|t| t.term.is_some());
    let (verdict, explanation) =
        if !same_term.is_empty() {
            ("invalid", same_term.iter().map(sentence).collect())
        } else if !any_role {
            (
                "skipped",
                vec!["no node reported its role (the target gives no status)".to_string()],
            )
        } else if all.is_empty() {
            ("skipped", vec!["no node was ever seen leading".to_string()])
        } else if !any_term {
            (
            "skipped",
            vec!["the target reports no terms, so two leaders of one term cannot be told from a \
                  change of leader"
                .to_string()],
        )
        } else {
            ("valid", Vec::new())
        };
    ElectionReport {
        verdict,
        explanation,
        leaderships: leaderships.len(),
        same_term,
        overlaps,
        longest_overlap_ms,
        sample_interval_ms,
    }
}

fn seconds(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

/// `two leaders in term 7: n2 (seen leading from 12.30 s to 12.95 s, 14 samples) and n4 (...)`
fn sentence(s: &SameTerm) -> String {
    let mut nodes: BTreeMap<&str, Vec<&Tenure>> = BTreeMap::new();
    for t in &s.leaders {
        nodes.entry(t.node.as_str()).or_default().push(t);
    }
    let parts: Vec<String> = nodes
        .iter()
        .map(|(node, ts)| {
            let from = ts.iter().map(|t| t.from_ns).min().unwrap_or(0);
            let to = ts.iter().map(|t| t.to_ns).max().unwrap_or(0);
            let n: usize = ts.iter().map(|t| t.samples).sum();
            if from == to {
                format!("{node} (seen leading at {}, 1 sample)", seconds(from))
            } else {
                format!(
                    "{node} (seen leading from {} to {}, {n} samples)",
                    seconds(from),
                    seconds(to)
                )
            }
        })
        .collect();
    let list = match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.join(""),
    };
    format!(
        "two leaders in one term: {list} both claimed to lead term {} (Election Safety: at most \
         one leader per term)",
        s.term
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64, node: &str, role: Option<&str>, term: u64) -> Sample {
        Sample {
            time_ns: ms * 1_000_000,
            node: node.to_string(),
            role: role.map(str::to_string),
            term: Some(term),
            leader: None,
            consistent: true,
        }
    }

    #[test]
    fn a_change_of_leader_is_valid_and_its_overlap_recorded() {
        let samples = vec![
            s(0, "n1", Some("leader"), 2),
            s(0, "n2", Some("follower"), 2),
            s(50, "n1", Some("leader"), 2),
            // n1 cut off, still claims term 2; n2 wins term 3.
            s(100, "n2", Some("leader"), 3),
            s(100, "n1", Some("leader"), 2),
            s(150, "n2", Some("leader"), 3),
            s(150, "n1", Some("leader"), 2),
            s(200, "n1", Some("follower"), 3),
            s(200, "n2", Some("leader"), 3),
        ];
        let r = check(&samples, 50.0);
        assert_eq!(r.verdict, "valid", "{:?}", r.explanation);
        assert_eq!(r.leaderships, 2);
        assert_eq!(r.overlaps.len(), 1);
        assert_eq!(r.overlaps[0].duration_ms, 50.0);
        assert_eq!(r.overlaps[0].terms, [Some(2), Some(3)]);
    }

    #[test]
    fn two_leaders_of_one_term_are_named_with_the_term() {
        let samples = vec![
            s(1000, "n1", Some("leader"), 5),
            s(1050, "n1", Some("follower"), 6),
            s(3000, "n4", Some("leader"), 5),
            s(3050, "n4", Some("leader"), 5),
        ];
        let r = check(&samples, 50.0);
        assert_eq!(r.verdict, "invalid");
        assert_eq!(r.same_term.len(), 1);
        assert_eq!(r.same_term[0].term, 5);
        let e = &r.explanation[0];
        assert!(
            e.contains("n1") && e.contains("n4") && e.contains("term 5"),
            "{e}"
        );
        assert!(
            e.contains("1.00 s") && e.contains("3.00 s to 3.05 s"),
            "{e}"
        );
        // Not at the same time: no overlap is claimed.
        assert!(r.overlaps.is_empty());
    }

    #[test]
    fn a_torn_report_needs_a_second_sample_to_count() {
        let mut a = s(100, "n1", Some("leader"), 7);
        a.consistent = false;
        let samples = vec![
            s(0, "n2", Some("leader"), 7),
            s(50, "n2", Some("leader"), 7),
            a.clone(),
            s(150, "n1", Some("follower"), 7),
        ];
        assert_eq!(check(&samples, 50.0).verdict, "valid");
        let mut b = a.clone();
        b.time_ns = 150_000_000;
        let samples = vec![s(0, "n2", Some("leader"), 7), a, b];
        assert_eq!(check(&samples, 50.0).verdict, "invalid");
    }

    #[test]
    fn targets_without_roles_or_terms_are_skipped() {
        let silent = vec![s(0, "n1", None, 0)];
        assert_eq!(check(&silent, 50.0).verdict, "skipped");
        let mut no_term = s(0, "n1", Some("leader"), 0);
        no_term.term = None;
        let r = check(&[no_term], 50.0);
        assert_eq!(r.verdict, "skipped");
        assert!(r.explanation[0].contains("no terms"));
    }

    #[test]
    fn status_lines_are_read_back() {
        let path =
            std::env::temp_dir().join(format!("faultline-election-{}.jsonl", std::process::id()));
        std::fs::write(
            &path,
            "{\"time\":5,\"node\":\"n1\",\"role\":\"leader\",\"term\":2,\"leader\":\"n1\",\"consistent\":false}\n\
             {\"time\":1,\"node\":\"n2\",\"role\":null,\"term\":null,\"leader\":null}\n\
             {\"time\":9,\"node\n",
        )
        .unwrap();
        let (samples, note) = read_samples(&path);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].node, "n2");
        assert!(!samples[1].consistent && samples[1].leader.as_deref() == Some("n1"));
        assert!(note.unwrap().contains("1 unreadable"));
        let _ = std::fs::remove_file(&path);
    }
}
