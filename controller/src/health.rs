//! The `cluster-health` check: a run is not a pass just because its history is linearizable.
//! A history in which the cluster did almost nothing, or in which nodes died on their own, is
//! consistent for the wrong reason; this check fails such a run (by default), so a broken
//! setup — a port clash, a crash at start-up, a node that never comes back — cannot end as a
//! bare VALID.
//!
//! It fails when:
//! * a node **exited unexpectedly** (not killed by the nemesis);
//! * the cluster **completed almost nothing**: fewer than [`MIN_OK_FRACTION`] of the client
//!   operations that completed were answered (acknowledged, or refused only because a
//!   compare-and-set found another value), or not a single write was acknowledged. Faults make
//!   operations fail, but a cluster that serves between faults answers most of them (60 s runs
//!   of the correct bundled Raft at the defaults answered 69–85%, median 79%, over 20 seeds);
//!   under 10% means clients spent the run talking to a cluster that was not there;
//! * the cluster **did not recover** after the faults (no final reads were possible).
//!
//! What the cluster served is not judged for a run the user interrupted: stopped seconds in,
//! perhaps before the cluster was up, it served little for a reason of its own.

use serde::Serialize;

/// Below this share of acknowledged operations, the cluster "completed almost nothing".
pub const MIN_OK_FRACTION: f64 = 0.10;

/// A node that died on its own.
#[derive(Clone, Debug, Serialize)]
pub struct Crash {
    pub node: String,
    pub status: String,
    /// The last lines of its log.
    pub log_tail: String,
}

/// What the clients got from the cluster.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Served {
    /// Operations the cluster answered: acknowledged, or a cas that found another value.
    pub answered: usize,
    /// Operations that ended ok, fail or info (or never).
    pub completed: usize,
    /// Writes acknowledged.
    pub ok_writes: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// `valid` or `invalid`.
    pub verdict: &'static str,
    pub explanation: Vec<String>,
    pub crashes: Vec<Crash>,
    /// `None` when the run recorded no history.
    pub served: Option<Served>,
}

/// Judges a run: its unexpected exits, what the clients were served (`None` without a
/// history; not judged when `interrupted`), and why the final reads were skipped if they were
/// for lack of a cluster.
pub fn check(
    crashes: Vec<Crash>,
    served: Option<Served>,
    not_recovered: Option<&str>,
    interrupted: bool,
) -> Health {
    let mut explanation = Vec::new();
    for c in &crashes {
        let tail = c.log_tail.lines().last().unwrap_or("").trim();
        if tail.is_empty() {
            explanation.push(format!(
                "{} exited unexpectedly ({}); see its log",
                c.node, c.status
            ));
        } else {
            explanation.push(format!(
                "{} exited unexpectedly ({}); its log ends: {}",
                c.node,
                c.status,
                faultline_checker::text::for_terminal(tail)
            ));
        }
    }
    if let Some(Served {
        answered,
        completed,
        ok_writes,
    }) = served.filter(|_| !interrupted)
    {
        if completed > 0 && (answered as f64) < MIN_OK_FRACTION * completed as f64 {
            explanation.push(format!(
                "the cluster completed almost nothing: {answered} of {completed} operations \
                 were answered (under {:.0}%)",
                MIN_OK_FRACTION * 100.0
            ));
        } else if ok_writes == 0 {
            explanation.push(format!(
                "the cluster acknowledged no write ({answered} of {completed} operations \
                 answered, none of them a write)"
            ));
        }
    }
    if let Some(why) = not_recovered {
        explanation.push(format!(
            "the cluster did not recover after the faults: {why}"
        ));
    }
    Health {
        verdict: if explanation.is_empty() {
            "valid"
        } else {
            "invalid"
        },
        explanation,
        crashes,
        served,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_cluster_is_healthy() {
        let served = |answered, completed, ok_writes| {
            Some(Served {
                answered,
                completed,
                ok_writes,
            })
        };
        let h = check(Vec::new(), served(9000, 11000, 3000), None, false);
        assert_eq!(h.verdict, "valid");
        assert!(h.explanation.is_empty());
    }

    #[test]
    fn an_interrupted_run_is_not_judged_by_what_it_served() {
        let served = Some(Served {
            answered: 1,
            completed: 1,
            ok_writes: 0,
        });
        assert_eq!(check(Vec::new(), served, None, false).verdict, "invalid");
        assert_eq!(check(Vec::new(), served, None, true).verdict, "valid");
        let crash = Crash {
            node: "n1".into(),
            status: "exit status: 1".into(),
            log_tail: String::new(),
        };
        assert_eq!(check(vec![crash], served, None, true).verdict, "invalid");
    }

    #[test]
    fn crashes_and_idle_clusters_fail_with_a_reason() {
        let served = |answered, completed, ok_writes| {
            Some(Served {
                answered,
                completed,
                ok_writes,
            })
        };
        let crash = Crash {
            node: "n2".into(),
            status: "exit status: 1".into(),
            log_tail: "starting\nerror: address already in use\n".into(),
        };
        let h = check(vec![crash], served(257, 445, 80), None, false);
        assert_eq!(h.verdict, "invalid");
        assert!(h.explanation[0].contains("n2 exited unexpectedly (exit status: 1)"));
        assert!(h.explanation[0].contains("address already in use"));
        let h = check(Vec::new(), served(9, 1000, 3), None, false);
        assert!(
            h.explanation[0].contains("9 of 1000"),
            "{:?}",
            h.explanation
        );
        let h = check(Vec::new(), served(500, 600, 0), None, false);
        assert!(h.explanation[0].contains("no write"), "{:?}", h.explanation);
        let h = check(
            Vec::new(),
            served(500, 600, 100),
            Some("no leader was elected within 30 s"),
            false,
        );
        assert_eq!(h.verdict, "invalid");
        assert!(h.explanation[0].contains("did not recover"));
        // Without a history only exits and recovery are judged.
        assert_eq!(check(Vec::new(), None, None, false).verdict, "valid");
    }
}
