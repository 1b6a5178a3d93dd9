//! `faultline shrink RUN_DIR`: from a failing run, the smallest fault schedule that still
//! fails, as a test definition that replays it.
//!
//! Runs are not deterministic (elections, scheduling and client interleaving differ), so a
//! candidate schedule "still fails" when any of `--tries` replays of it is invalid on one of
//! the checks that failed in the source run (so the shrink does not drift to another failure,
//! such as a cluster that did not recover). The steps, each bounded by the budget, the best
//! failing schedule always kept:
//!
//! 1. **Reproduce**: replay the whole schedule.
//! 2. **Cut at the first violation**: faults issued after the first operation that showed the
//!    bug cannot have caused it; drop them and end the test soon after.
//! 3. **Delta debugging** (Zeller's ddmin) over the adaptive schedule's scenarios (a scenario's
//!    faults act together: isolate a follower, then depose the leader as it returns), then over
//!    the single faults left.
//! 4. **Shorten** each remaining fault (halve how long it is held) and move the schedule to
//!    the start of the test, then end the test 2 s after the last heal.
//! 5. **Measure**: replay the result several times and report how often it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use faultline_controller::config::TestFile;
use faultline_nemesis::replay::PlannedFault;
use serde_json::{json, Value};

use faultline_checker::text::for_terminal;

use crate::runner::{self, human, Job};

/// `faultline shrink` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit code: 1 when the shrunk schedule still fails (the bug reproduced), \
2 when the source run did not fail again under replay, 254 for bad input.

Example:
  faultline shrink results/raft-register/20261205T101500Z --tries 3 --budget 10m"
)]
pub struct ShrinkArgs {
    /// A failing run's folder (RESULTS_DIR/NAME/STAMP).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Replays of each candidate schedule; it still fails if any of them fails.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub tries: u32,
    /// Time for the whole shrink, e.g. 600, 15m [default: 15m].
    #[arg(long, value_name = "DURATION")]
    pub budget: Option<String>,
    /// How replays aim their faults: leader or literal (see `faultline test --replay-aim`).
    #[arg(long, value_name = "HOW")]
    pub replay_aim: Option<String>,
}

/// What a shrink came to.
pub struct Outcome {
    pub dir: PathBuf,
    /// Whether the final schedule failed again.
    pub reproduced: bool,
}

/// One candidate schedule and what its tries gave.
struct Candidate {
    number: usize,
    step: &'static str,
    faults: usize,
    time_limit: f64,
    /// `invalid`, `valid`, ... per try; the run folder of each.
    tries: Vec<(String, Option<PathBuf>)>,
    fails: bool,
}

struct Shrinker {
    base: TestFile,
    failed_checks: Vec<String>,
    tries: u32,
    budget: f64,
    started: Instant,
    dir: PathBuf,
    candidates: Vec<Candidate>,
    /// Results by (fault list, time limit), so no schedule is run twice.
    cache: BTreeMap<String, bool>,
    /// A run's cost beyond its time limit (start, recovery, checks), as measured.
    overhead: f64,
    /// Why the search stopped early: `budget`, `interrupted`, or a failure to run a test.
    stopped: Option<String>,
    /// The failing run of the best schedule so far.
    best_run: Option<PathBuf>,
}

impl Shrinker {
    /// Whether the schedule still fails; `None` once the budget is spent.
    fn fails(
        &mut self,
        step: &'static str,
        faults: &[PlannedFault],
        time_limit: f64,
    ) -> Option<bool> {
        let key = format!(
            "{time_limit}|{}",
            serde_json::to_string(faults).unwrap_or_default()
        );
        if let Some(&known) = self.cache.get(&key) {
            return Some(known);
        }
        let number = self.candidates.len() + 1;
        let mut test = self.base.clone();
        test.faults = Some(faults.to_vec());
        test.time_limit = Some(time_limit);
        let config = self
            .dir
            .join("candidates")
            .join(format!("{number:03}.toml"));
        let written = toml::to_string(&test)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                std::fs::create_dir_all(self.dir.join("candidates")).map_err(|e| e.to_string())?;
                std::fs::write(&config, text).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            self.stopped = Some(format!("cannot write {}: {e}", config.display()));
            return None;
        }
        let mut cand = Candidate {
            number,
            step,
            faults: faults.len(),
            time_limit,
            tries: Vec::new(),
            fails: false,
        };
        for t in 1..=self.tries {
            if runner::signals::received() > 0 {
                self.stopped = Some("interrupted".to_string());
                break;
            }
            if self.started.elapsed().as_secs_f64() + time_limit + self.overhead > self.budget {
                self.stopped = Some("budget".to_string());
                break;
            }
            let job = Job {
                config: config.clone(),
                seed: self.base.seed.unwrap_or(1),
                results_dir: self.dir.join("runs").join(format!("{number:03}-t{t}")),
                log: self.dir.join("logs").join(format!("{number:03}-t{t}.log")),
            };
            let finished = match runner::run(job, 0) {
                Ok(f) => f,
                Err(e) => {
                    self.stopped = Some(e);
                    break;
                }
            };
            if finished.results.is_some() {
                self.overhead = (self.overhead + (finished.wall_s - time_limit).max(0.0)) / 2.0;
            }
            let failed = finished.verdict() == "invalid"
                && finished
                    .failed_checks()
                    .iter()
                    .any(|c| self.failed_checks.contains(c));
            cand.tries
                .push((finished.verdict(), finished.run_dir.clone()));
            if failed {
                cand.fails = true;
                self.best_run = finished.run_dir.clone();
                break;
            }
            if runner::signals::received() > 0 {
                // The run was cut short: its pass proves nothing.
                self.stopped = Some("interrupted".to_string());
                break;
            }
        }
        let complete = cand.fails || cand.tries.len() as u32 == self.tries;
        eprintln!(
            "  candidate {number:>3} ({step}): {} faults, {:.1} s: {} [{}] ({} elapsed)",
            faults.len(),
            time_limit,
            if cand.fails {
                "fails"
            } else if complete {
                "passes"
            } else {
                "not finished"
            },
            for_terminal(
                &cand
                    .tries
                    .iter()
                    .map(|(v, _)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            human(self.started.elapsed().as_secs_f64())
        );
        let fails = cand.fails;
        self.candidates.push(cand);
        if !complete {
            return None;
        }
        self.cache.insert(key, fails);
        Some(fails)
    }
}

/// Checks whose failure says something about the run rather than the data.
const NOT_IN_THE_DATA: &[&str] = &["cluster-health", "availability"];

/// Zeller's ddmin: a smallest-by-removal subset of `items` on which `fails` holds (given
/// that it holds on all of them). `fails` returning `None` (budget spent) ends the search
/// with the best subset found so far.
fn ddmin<T: Clone>(items: Vec<T>, fails: &mut dyn FnMut(&[T]) -> Option<bool>) -> Vec<T> {
    let mut items = items;
    let mut n = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let parts: Vec<Vec<T>> = items.chunks(chunk).map(<[T]>::to_vec).collect();
        let mut reduced = false;
        // A part alone, then everything but a part.
        for part in &parts {
            match fails(part) {
                Some(true) => {
                    items = part.clone();
                    n = 2;
                    reduced = true;
                    break;
                }
                Some(false) => {}
                None => return items,
            }
        }
        if !reduced && parts.len() > 2 {
            for i in 0..parts.len() {
                let rest: Vec<T> = parts
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, p)| p.iter().cloned())
                    .collect();
                match fails(&rest) {
                    Some(true) => {
                        items = rest;
                        n = (n - 1).max(2);
                        reduced = true;
                        break;
                    }
                    Some(false) => {}
                    None => return items,
                }
            }
        }
        if !reduced {
            if n >= items.len() {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    items
}

/// Groups of faults that belong together: one scenario's faults, or a fault on its own.
fn groups(faults: &[PlannedFault]) -> Vec<Vec<PlannedFault>> {
    let mut out: Vec<Vec<PlannedFault>> = Vec::new();
    let mut by_scenario: BTreeMap<u64, usize> = BTreeMap::new();
    for f in faults {
        match f.scenario_id {
            Some(id) => match by_scenario.get(&id) {
                Some(&i) => out[i].push(f.clone()),
                None => {
                    by_scenario.insert(id, out.len());
                    out.push(vec![f.clone()]);
                }
            },
            None => out.push(vec![f.clone()]),
        }
    }
    out
}

/// The time limit that holds `faults` and a little after (the clients must see the effect).
fn fitted_time_limit(faults: &[PlannedFault], at_least: f64) -> f64 {
    let end = faults
        .iter()
        .map(|f| f.heal.unwrap_or(f.at))
        .fold(at_least, f64::max);
    ((end + 2.0) * 10.0).ceil() / 10.0
}

/// Shrinks the failing run in `args.run_dir`.
pub fn run(mut args: ShrinkArgs) -> Result<Outcome, String> {
    // A stable name for the source (`results/latest` moves on as soon as a replay finishes).
    args.run_dir = std::fs::canonicalize(&args.run_dir)
        .map_err(|e| format!("{}: {e} (give a run's folder)", args.run_dir.display()))?;
    if args.tries == 0 || args.tries > 100 {
        return Err(format!("--tries: between 1 and 100, got {}", args.tries));
    }
    let budget = runner::parse_duration(args.budget.as_deref().unwrap_or("15m"))
        .map_err(|e| format!("--budget: {e}"))?;
    let results_path = args.run_dir.join("results.json");
    let results: Value = std::fs::read_to_string(&results_path)
        .map_err(|e| {
            format!(
                "cannot read {}: {e} (give a run's folder)",
                results_path.display()
            )
        })
        .and_then(|t| {
            serde_json::from_str(&t).map_err(|e| format!("{}: {e}", results_path.display()))
        })?;
    if results["verdict"] != "invalid" {
        return Err(format!(
            "{} is {}, not invalid: shrink starts from a failing run",
            args.run_dir.display(),
            for_terminal(results["verdict"].as_str().unwrap_or("unreadable"))
        ));
    }
    let mut failed_checks = runner::failed_checks(&results);
    // When the data showed the bug, only the data may show it again: a candidate whose cluster
    // merely failed to recover (cluster-health, availability) is another failure.
    if failed_checks
        .iter()
        .any(|c| !NOT_IN_THE_DATA.contains(&c.as_str()))
    {
        failed_checks.retain(|c| !NOT_IN_THE_DATA.contains(&c.as_str()));
    }
    let mut base = faultline_controller::replay_file(&args.run_dir)?;
    if let Some(aim) = &args.replay_aim {
        aim.parse::<faultline_nemesis::replay::ReplayAim>()
            .map_err(|e| format!("--replay-aim: {e}"))?;
        base.replay_aim = Some(aim.clone());
    }
    // Checked now, so a bad --replay-aim fails before anything runs.
    base.clone().resolve()?;
    let source_faults = base.faults.clone().unwrap_or_default();
    if source_faults.is_empty() {
        return Err(format!(
            "{} applied no faults: there is no schedule to shrink",
            args.run_dir.display()
        ));
    }
    let source_limit = base
        .time_limit
        .ok_or("the run's test.toml has no time_limit")?;
    let dir = args
        .run_dir
        .join("shrink")
        .join(faultline_controller::utc_stamp(SystemTime::now()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    runner::signals::install()?;
    eprintln!(
        "faultline shrink: {} faults in {:.0} s, failing {}; {} tries per candidate, budget {}; \
         folder {}",
        source_faults.len(),
        source_limit,
        for_terminal(&failed_checks.join(", ")),
        args.tries,
        human(budget),
        dir.display()
    );
    let mut s = Shrinker {
        base: base.clone(),
        failed_checks: failed_checks.clone(),
        tries: args.tries,
        budget,
        started: Instant::now(),
        dir: dir.clone(),
        candidates: Vec::new(),
        cache: BTreeMap::new(),
        overhead: 8.0,
        stopped: None,
        best_run: None,
    };
    let mut best = source_faults.clone();
    let mut limit = source_limit;
    // A rolling upgrade runs at fixed times from the start: the faults keep their times
    // relative to it, and the run keeps its length (a shorter one could end before the step
    // that failed, or before the upgrade starts).
    let upgrade = base.upgrade.is_some();
    if upgrade {
        eprintln!(
            "  the run has a rolling upgrade: it is kept as is, and the schedule keeps its times"
        );
    }
    // 1. Reproduce.
    let reproduce = s.fails("reproduce", &best, limit);
    let reproduced = reproduce == Some(true);
    if reproduced {
        // 2. Cut at the first violation, when it is an operation's time (a divergence found at
        //    the end of the run says nothing about when the damage was done).
        let clients_ran = results["clients_ran_s"].as_f64().unwrap_or(source_limit);
        if let Some(t) = results["first_violation_s"].as_f64() {
            if t < clients_ran - 0.5 {
                let kept: Vec<PlannedFault> = best.iter().filter(|f| f.at <= t).cloned().collect();
                let cut: Vec<PlannedFault> = kept
                    .iter()
                    .map(|f| PlannedFault {
                        heal: f.heal.map(|h| h.min(t + 1.0)),
                        ..f.clone()
                    })
                    .collect();
                let l = if upgrade {
                    limit
                } else {
                    fitted_time_limit(&cut, t).min(limit)
                };
                if !cut.is_empty()
                    && (cut.len() < best.len() || l < limit)
                    && s.fails("cut at the first violation", &cut, l) == Some(true)
                {
                    best = cut;
                    limit = l;
                }
            }
        }
        // 3. ddmin over scenarios, then over single faults.
        let l = limit;
        let grouped = groups(&best);
        if grouped.len() > 1 {
            let kept = ddmin(grouped, &mut |g: &[Vec<PlannedFault>]| {
                let flat: Vec<PlannedFault> = g.iter().flatten().cloned().collect();
                s.fails("remove scenarios", &flat, l)
            });
            best = kept.into_iter().flatten().collect();
        }
        if best.len() > 1 && s.stopped.is_none() {
            best = ddmin(best, &mut |f: &[PlannedFault]| {
                s.fails("remove faults", f, l)
            });
        }
        // 4. Shorten each fault, then move the schedule to the start.
        for i in 0..best.len() {
            loop {
                if s.stopped.is_some() {
                    break;
                }
                let Some(h) = best[i].heal else { break };
                let held = h - best[i].at;
                if held < 0.8 {
                    break;
                }
                let mut shorter = best.clone();
                shorter[i].heal = Some(((best[i].at + held / 2.0) * 1e3).round() / 1e3);
                if s.fails("shorten a fault", &shorter, limit) == Some(true) {
                    best = shorter;
                } else {
                    break;
                }
            }
        }
        if s.stopped.is_none() && !upgrade {
            let first = best.iter().map(|f| f.at).fold(f64::INFINITY, f64::min);
            let shift = if first > 1.0 { first - 0.5 } else { 0.0 };
            let moved: Vec<PlannedFault> = best
                .iter()
                .map(|f| PlannedFault {
                    at: ((f.at - shift) * 1e3).round() / 1e3,
                    heal: f.heal.map(|h| ((h - shift) * 1e3).round() / 1e3),
                    ..f.clone()
                })
                .collect();
            let l = fitted_time_limit(&moved, 1.0).max(1.0);
            if (shift > 0.0 || l < limit) && s.fails("move to the start", &moved, l) == Some(true) {
                best = moved;
                limit = l;
            }
        }
    }
    // 5. Measure the final schedule.
    let final_tries = args.tries.max(5);
    let mut test = base.clone();
    test.faults = Some(best.clone());
    test.time_limit = Some(limit);
    test.replay_of = Some(args.run_dir.display().to_string());
    let final_toml = dir.join("test.toml");
    let text = toml::to_string(&test).map_err(|e| format!("cannot write test.toml: {e}"))?;
    std::fs::write(&final_toml, format!(
        "# The smallest schedule `faultline shrink` found that still fails {}.\n# Replay it with: faultline test --config {}\n{text}",
        args.run_dir.display(),
        final_toml.display()
    ))
    .map_err(|e| format!("cannot write {}: {e}", final_toml.display()))?;
    let mut final_fails = 0;
    let mut final_runs = 0;
    let mut final_dirs = Vec::new();
    if reproduced {
        for t in 1..=final_tries {
            // The budget covers the measurement too, but one run of the result always happens.
            let over = s.started.elapsed().as_secs_f64() + limit + s.overhead > budget;
            if runner::signals::received() > 0 || (t > 1 && over) {
                s.stopped
                    .get_or_insert_with(|| if over { "budget" } else { "interrupted" }.into());
                break;
            }
            let job = Job {
                config: final_toml.clone(),
                seed: base.seed.unwrap_or(1),
                results_dir: dir.join("runs").join(format!("final-t{t}")),
                log: dir.join("logs").join(format!("final-t{t}.log")),
            };
            let f = match runner::run(job, 0) {
                Ok(f) => f,
                Err(e) => {
                    s.stopped = Some(e);
                    break;
                }
            };
            let failed = f.verdict() == "invalid"
                && f.failed_checks().iter().any(|c| failed_checks.contains(c));
            final_dirs.push(json!({"verdict": f.verdict(), "dir": f.run_dir}));
            if !failed && runner::signals::received() > 0 {
                // Cut short: its pass proves nothing.
                s.stopped = Some("interrupted".to_string());
                break;
            }
            final_runs += 1;
            if failed {
                final_fails += 1;
                s.best_run = f.run_dir.clone();
            }
        }
    }
    // "2 faults in 6 s: isolate n3 (leader) at 1.2 s for 0.8 s, kill n1 at 1.5 s"
    let schedule = format!(
        "{} fault{} in {} s: {}",
        best.len(),
        if best.len() == 1 { "" } else { "s" },
        trim_float(limit),
        best.iter()
            .map(PlannedFault::describe)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sentence = if reproduced && final_runs == 0 {
        format!(
            "failed in the search, but was not measured ({}): {schedule}",
            s.stopped.as_deref().unwrap_or("interrupted")
        )
    } else if reproduced {
        format!("fails {final_fails}/{final_runs} times with {schedule}")
    } else if reproduce.is_none() {
        let tried = s.candidates.first().map_or(0, |c| c.tries.len());
        format!(
            "stopped ({}) after {tried} of {} replays of the whole schedule, none failing: \
             nothing shrunk",
            s.stopped.as_deref().unwrap_or("interrupted"),
            args.tries
        )
    } else {
        format!(
            "did not fail again in {} replays of the whole schedule: nothing to shrink (try more \
             --tries, or --replay-aim literal if the bug follows a node rather than the leader)",
            args.tries
        )
    };
    let sentence = for_terminal(&sentence);
    let summary = json!({
        "source": args.run_dir,
        "failed_checks": failed_checks,
        "tries": args.tries,
        "budget_s": budget,
        "wall_s": (s.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "stopped": s.stopped,
        "before": {"faults": source_faults.len(), "time_limit_s": source_limit},
        "after": {"faults": best.len(), "time_limit_s": limit},
        "final": {"fails": final_fails, "runs": final_runs, "runs_detail": final_dirs},
        "reproduced_by": s.best_run,
        "sentence": sentence,
        "schedule": best.iter().map(PlannedFault::describe).collect::<Vec<_>>(),
        "candidates": s.candidates.iter().map(|c| json!({
            "number": c.number,
            "step": c.step,
            "faults": c.faults,
            "time_limit_s": c.time_limit,
            "fails": c.fails,
            "tries": c.tries.iter().map(|(v, d)| json!({"verdict": v, "dir": d})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("shrink.json"), text + "\n")
        .map_err(|e| format!("cannot write shrink.json: {e}"))?;
    let readme = format!(
        "{sentence}\n\nschedule: {}\nreproduced by: {}\nsource: {} ({} faults in {} s)\n",
        final_toml.display(),
        s.best_run
            .as_ref()
            .map_or("(no run)".to_string(), |p| p.display().to_string()),
        args.run_dir.display(),
        source_faults.len(),
        trim_float(source_limit)
    );
    std::fs::write(dir.join("README.txt"), &readme)
        .map_err(|e| format!("cannot write README.txt: {e}"))?;
    eprintln!("faultline shrink: {sentence}");
    eprintln!("schedule: {}", final_toml.display());
    if let Some(r) = &s.best_run {
        eprintln!("reproduced by: {}", r.display());
    }
    Ok(Outcome {
        dir,
        // Reproduced during the search: a measurement cut short does not undo that.
        reproduced: reproduced && (final_fails > 0 || final_runs == 0),
    })
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_two_items_that_matter_and_stops_when_the_budget_ends() {
        let items: Vec<u32> = (0..16).collect();
        let mut calls = 0;
        let kept = ddmin(items.clone(), &mut |s: &[u32]| {
            calls += 1;
            Some(s.contains(&3) && s.contains(&11))
        });
        assert_eq!(kept, vec![3, 11]);
        assert!(calls < 60, "{calls} tests");
        let kept = ddmin(items.clone(), &mut |s: &[u32]| Some(s.contains(&7)));
        assert_eq!(kept, vec![7]);
        // Out of budget at once: everything is kept.
        assert_eq!(ddmin(items.clone(), &mut |_| None), items);
    }

    #[test]
    fn a_scenario_s_faults_stay_together() {
        let f = |at: f64, id: Option<u64>| PlannedFault {
            at,
            heal: Some(at + 1.0),
            fault: faultline_nemesis::FaultKind::Kill,
            kind: None,
            nodes: vec!["n1".into()],
            grudge: None,
            offsets_ms: None,
            latency_ms: None,
            jitter_ms: None,
            loss: None,
            leader: None,
            source_id: None,
            scenario: None,
            scenario_id: id,
            target: None,
        };
        let g = groups(&[
            f(1.0, Some(1)),
            f(2.0, Some(1)),
            f(3.0, None),
            f(4.0, Some(2)),
        ]);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 1]);
        assert_eq!(fitted_time_limit(&[f(1.0, None)], 1.0), 4.0);
    }
}
