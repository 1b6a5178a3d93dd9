#!/usr/bin/env python3
"""Detection benchmark: how often `faultline test` with default settings catches each of the
bundled Raft's deliberate bugs, how soon, and how often it raises a false alarm on the correct
build. Runs the current defaults ("new") and the previous defaults ("old": the uniform schedule,
one fault every 10 s, a 2 s client timeout, 10 clients) in the same invocation, so the two are measured
on the same machine at the same time. Prints numbers; asserts nothing (it exits 1 only when a run errored instead of being judged).

Usage (through scripts/bench-detection):
    bench_detection.py BINARY [--seeds 10] [--clean-seeds 20] [--time-limit 60] [--jobs 2]
                              [--bugs a,b] [--schedules new,old] [--out DIR] [--extra FLAGS]
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time

# The defaults compared: extra `faultline test` flags on top of today's defaults. "old" puts
# back the previous defaults: the uniform schedule (one fault every 10 s, drawn uniformly from
# kind x aim x shape), a 2 s client timeout and 10 clients. It still gets two things the old
# faultline did not have, both of which can only raise its rates: the `election` check, and
# lease reads switched on by `--raft-bug lease-ignores-drift` (before, that bug needed
# `--raft-read-mode lease` by hand and was inert without it).
SCHEDULES = {
    "new": [],
    "old": ["--schedule", "uniform", "--op-timeout", "2", "--concurrency", "10"],
}


# Checks whose failure says something about the run, not that the data shows the bug.
NOT_DETECTING = {"cluster-health", "availability"}


def bug_names(binary):
    out = subprocess.run([binary, "node", "--bug", "help"], capture_output=True, text=True)
    names = []
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split()
        if line.startswith("  ") and parts and not parts[0].endswith(":"):
            names.append(parts[0])
    return names


def run_one(binary, out_dir, schedule, bug, seed, time_limit, extra):
    name = f"{schedule}-{bug}-{seed}"
    results = os.path.join(out_dir, "runs")
    cmd = [binary, "test", "--name", name, "--seed", str(seed), "--time-limit", str(time_limit),
           "--results-dir", results] + SCHEDULES[schedule] + extra
    if bug != "clean":
        cmd += ["--raft-bug", bug]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {"schedule": schedule, "bug": bug, "seed": seed, "exit": proc.returncode,
           "wall_s": round(time.time() - started, 1)}
    run_dirs = sorted(os.listdir(os.path.join(results, name))) if os.path.isdir(
        os.path.join(results, name)) else []
    if not run_dirs:
        row["verdict"] = "error"
        row["why"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr else []
        return row
    path = os.path.join(results, name, run_dirs[-1], "results.json")
    try:
        r = json.load(open(path))
    except (OSError, ValueError) as e:
        # No results: the run failed before checking; faultline's own error says why.
        row["verdict"] = "error"
        row["why"] = (proc.stderr.strip().splitlines() or [str(e)])[-1:]
        return row
    row["verdict"] = r.get("verdict")
    row["first_violation_s"] = r.get("first_violation_s")
    row["why"] = (r.get("explanation") or [])[:1]
    row["failed_checks"] = [c["name"] for c in r.get("checks", []) if c.get("verdict") == "invalid"]
    eff = r.get("efficacy") or {}
    row["faults"] = eff.get("faults")
    row["leader_changes"] = eff.get("leader_changes")
    row["dir"] = os.path.dirname(path)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--clean-seeds", type=int, default=20)
    ap.add_argument("--time-limit", type=float, default=60)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--bugs", default="")
    ap.add_argument("--schedules", default="new,old")
    ap.add_argument("--out", default="results/bench-detection")
    ap.add_argument("--extra", default="", help="more `faultline test` flags for every run")
    a = ap.parse_args()

    bugs = [b for b in a.bugs.split(",") if b] or bug_names(a.binary)
    schedules = [s for s in a.schedules.split(",") if s]
    for s in schedules:
        if s not in SCHEDULES:
            sys.exit(f"unknown schedule {s!r}; known: {', '.join(SCHEDULES)}")
    out_dir = os.path.join(a.out, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(out_dir, exist_ok=True)
    jobs = []
    for s in schedules:
        for bug in bugs:
            jobs += [(s, bug, seed) for seed in range(1, a.seeds + 1)]
        if a.clean_seeds:
            jobs += [(s, "clean", seed) for seed in range(1, a.clean_seeds + 1)]
    print(f"bench-detection: {len(jobs)} runs of {a.time_limit:.0f} s ({', '.join(schedules)}; "
          f"{len(bugs)} bugs x {a.seeds} seeds, clean x {a.clean_seeds}), {a.jobs} at a time; "
          f"runs in {out_dir}", flush=True)
    rows = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        extra = a.extra.split()
        futures = [pool.submit(run_one, a.binary, out_dir, s, b, seed, a.time_limit, extra)
                   for (s, b, seed) in jobs]
        for f in concurrent.futures.as_completed(futures):
            row = f.result()
            rows.append(row)
            fv = row.get("first_violation_s")
            print(f"  [{len(rows)}/{len(jobs)}] {row['schedule']:>3} {row['bug']:<24} seed {row['seed']:>2}: "
                  f"{row['verdict']}" + (f" at {fv:.1f} s" if fv is not None else "") +
                  (f" ({', '.join(row['failed_checks'])})" if row.get("failed_checks") else ""),
                  flush=True)
    json.dump(rows, open(os.path.join(out_dir, "runs.json"), "w"), indent=1)

    def cell(schedule, bug):
        rs = [r for r in rows if r["schedule"] == schedule and r["bug"] == bug]
        if not rs:
            return "", ""
        judged = [r for r in rs if r["verdict"] in ("valid", "invalid", "unknown")]
        if bug == "clean":
            bad = sum(r["verdict"] != "valid" for r in judged)
            return f"{bad}/{len(judged)} false alarms", ""
        # Caught means a check that looks at the data failed: a run that failed only
        # `cluster-health` or `availability` found something, but not the bug.
        caught = [r for r in judged if set(r.get("failed_checks", [])) - NOT_DETECTING]
        times = [r["first_violation_s"] for r in caught if r.get("first_violation_s") is not None]
        med = f"{statistics.median(times):.1f} s" if times else "-"
        return f"{len(caught)}/{len(judged)}", med

    print()
    header = f"{'bug':<24}" + "".join(f" | {s + ' caught':>16} {'median 1st':>10}" for s in schedules)
    print(header)
    print("-" * len(header))
    for bug in bugs + (["clean"] if a.clean_seeds else []):
        line = f"{bug:<24}"
        for s in schedules:
            c, m = cell(s, bug)
            line += f" | {c:>16} {m:>10}"
        print(line)
    errors = [r for r in rows if r["verdict"] not in ("valid", "invalid")]
    if errors:
        print(f"\n{len(errors)} run(s) ended neither valid nor invalid:")
        for r in errors:
            print(f"  {r['schedule']} {r['bug']} seed {r['seed']}: {r['verdict']} {r.get('why')}")
    print(f"\nevery run: {os.path.join(out_dir, 'runs.json')}")
    # Rates above count only the runs that were judged; runs that errored are listed instead.
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
