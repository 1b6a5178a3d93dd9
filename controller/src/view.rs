//! The cluster as last observed: each node's latest report of its role, term and leader, kept
//! up to date by the status sampler. The nemesis reads it to aim at whoever leads *now* and to
//! react to elections the moment they are seen, without asking the nodes itself.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_nemesis::Leader;
use faultline_targets::role::RoleReport;
use tokio::sync::watch;

/// One node's latest sample.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// `None`: the node did not answer its last sample (down, paused, cut off).
    pub report: Option<RoleReport>,
    /// When the sample was asked for, since the test started.
    pub at: Duration,
}

/// Every node's latest sample.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub nodes: BTreeMap<String, NodeView>,
}

impl View {
    /// The node that claims to lead the highest term (a deposed leader that has not heard of
    /// its successor still claims its old term, so the highest claim is the current one).
    /// Without terms, any node that claims to lead.
    pub fn leader(&self) -> Option<Leader> {
        self.nodes
            .iter()
            .filter_map(|(name, v)| {
                let r = v.report.as_ref()?;
                r.is_leader().then_some((r.term, v.at, name))
            })
            .max_by_key(|(term, at, _)| (*term, *at))
            .map(|(term, _, name)| Leader {
                node: name.clone(),
                term,
            })
    }
}

/// Whether `now` is a different leadership than `old`: another node, or a higher term.
pub fn is_new_leader(now: &Leader, old: Option<&Leader>) -> bool {
    match old {
        None => true,
        Some(old) => now.node != old.node || now.term > old.term,
    }
}

/// The shared, watchable view.
pub struct Observed {
    tx: watch::Sender<View>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            tx: watch::Sender::new(View::default()),
        }
    }
}

impl Observed {
    /// Records `node`'s sample taken at `at` (ignored if a later one is already in).
    pub fn update(&self, node: &str, at: Duration, report: Option<RoleReport>) {
        self.tx.send_if_modified(|view| {
            let entry = view.nodes.entry(node.to_string()).or_default();
            if entry.at > at {
                return false;
            }
            let changed = entry.report != report;
            *entry = NodeView { report, at };
            changed
        });
    }

    pub fn leader(&self) -> Option<Leader> {
        self.tx.borrow().leader()
    }

    /// Waits up to `timeout` for a leader other than `old`.
    pub async fn await_new_leader(
        &self,
        old: Option<&Leader>,
        timeout: Duration,
    ) -> Option<Leader> {
        let mut rx = self.tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = rx.borrow_and_update().leader() {
                if is_new_leader(&l, old) {
                    return Some(l);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(role: &str, term: u64) -> Option<RoleReport> {
        Some(RoleReport {
            role: role.to_string(),
            term: Some(term),
            leader: None,
            consistent: true,
        })
    }

    #[tokio::test]
    async fn the_highest_term_leads_and_new_leaders_are_awaited() {
        let o = Observed::default();
        let ms = Duration::from_millis;
        o.update("n1", ms(10), report("leader", 2));
        o.update("n2", ms(10), report("follower", 2));
        assert_eq!(o.leader().map(|l| l.node), Some("n1".to_string()));
        // n1 is cut off and still claims term 2; n3 wins term 3.
        o.update("n3", ms(20), report("leader", 3));
        let l = o.leader().unwrap();
        assert_eq!((l.node.as_str(), l.term), ("n3", Some(3)));
        // A sample older than the one in the view does not replace it.
        o.update("n3", ms(15), None);
        assert_eq!(o.leader().map(|l| l.node), Some("n3".to_string()));

        let old = o.leader();
        assert!(o.await_new_leader(old.as_ref(), ms(50)).await.is_none());
        let waiter = o.await_new_leader(old.as_ref(), Duration::from_secs(5));
        let elect = async {
            tokio::time::sleep(ms(20)).await;
            o.update("n3", ms(30), None);
            o.update("n2", ms(40), report("leader", 4));
        };
        let (new, ()) = tokio::join!(waiter, elect);
        assert_eq!(
            new.map(|l| (l.node, l.term)),
            Some(("n2".to_string(), Some(4)))
        );
    }
}
