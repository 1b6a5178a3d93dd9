"""The body of scripts/bench-checker (see there)."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

FAULTLINE = sys.argv[1]
CORPUS = os.environ["FAULTLINE_CORPUS"]
BENCH = os.environ["FAULTLINE_BENCH"]
REPEAT = os.environ.get("REPEAT", "20")


def check(path, model, initial, extra=()):
    """Runs faultline check once (repeating the check inside); returns (json, wall seconds)."""
    cmd = [FAULTLINE, "check", path, "--model", model, "--json", "--no-explain",
           "--repeat", REPEAT, *extra]
    if initial is not None:
        cmd += ["--initial", initial]
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if out.returncode not in (0, 1, 2):
        sys.exit(f"faultline failed on {path}: {out.stderr}")
    return json.loads(out.stdout.splitlines()[0]), wall


def porcupine_name(path):
    base = os.path.basename(path)
    stem = os.path.splitext(base)[0]
    return f"kv_{stem}" if "/kv/" in path else stem


porcupine = {}
with open(os.path.join(BENCH, "porcupine-timings.csv")) as f:
    for row in csv.DictReader(f):
        porcupine[row["history"]] = float(row["ms_per_op"])

print(f"faultline check on the corpus (median of {REPEAT} checks; parsing excluded, as for Porcupine)")
print("('check ms' is the time to the verdict; 'culprit ms' the extra time an invalid history's")
print(" exact culprit and longest partial linearization take, windows not minimised)")
print(f"{'history':42} {'expected':8} {'verdict':8} {'check ms':>9} {'porcupine':>10} {'speedup':>8} {'culprit ms':>10} {'wall ms':>8} {'peak MiB':>8}")
total = 0.0
total_porcupine = 0.0
total_ours_compared = 0.0
mismatches = 0
kv_ratios = []
with open(os.path.join(CORPUS, "manifest.tsv")) as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
for row in rows:
    path = os.path.join(CORPUS, row["path"])
    v, wall = check(path, row["model"], row["initial"])
    ms = v["check_ms"]
    total += ms
    name = porcupine_name(row["path"])
    p = porcupine.get(name)
    if v["verdict"] != row["expected"]:
        mismatches += 1
    if p is not None:
        total_porcupine += p
        total_ours_compared += ms
        if name.startswith("kv_"):
            kv_ratios.append((name, p / ms if ms > 0 else float("inf")))
    ptxt = f"{p:10.3f}" if p is not None else f"{'-':>10}"
    speed = f"{p / ms:7.1f}x" if p is not None and ms > 0 else f"{'-':>8}"
    print(f"{row['path']:42} {row['expected']:8} {v['verdict']:8} {ms:9.3f} {ptxt} {speed} "
          f"{v['explain_ms']:10.3f} {wall * 1000:8.1f} {v['peak_rss_kb'] / 1024:8.1f}")
print()
print(f"histories: {len(rows)}, verdict mismatches: {mismatches}")
print(f"total check time, all {len(rows)} histories: {total:.1f} ms")
print(f"on the {sum(1 for r in rows if porcupine_name(r['path']) in porcupine)} histories Porcupine was timed on: "
      f"faultline {total_ours_compared:.1f} ms, Porcupine {total_porcupine:.1f} ms "
      f"({total_porcupine / total_ours_compared:.1f}x faster; goal: 3x)")
if kv_ratios:
    reached = sum(1 for _, r in kv_ratios if r >= 10)
    print(f"kv histories at least 10x faster than Porcupine: {reached}/{len(kv_ratios)} "
          f"(" + ", ".join(f"{n[3:]} {r:.1f}x" for n, r in kv_ratios) + ")")
print("(Porcupine's times: ../shared/bench, measured with its own Go benchmarks on this kind of")
print(" machine; this script does not build Porcupine.)")

print()
print("synthetic cas-register histories (faultline synth; single check, no repeat)")
print(f"{'history':64} {'verdict':8} {'check ms':>9} {'wall ms':>8} {'peak MiB':>8}")
cases = [
    ("100k ops, 100 keys, 10 clients, 5% lost",
     ["--ops", "100000", "--keys", "100", "--concurrency", "10", "--lost", "0.05"]),
    ("100k ops, 100 keys, 10 clients, 5% lost, one stale read",
     ["--ops", "100000", "--keys", "100", "--concurrency", "10", "--lost", "0.05", "--plant-stale-read"]),
    ("2k ops, 1 key, 5 clients, 20% lost, unique values",
     ["--ops", "2000", "--concurrency", "5", "--lost", "0.2"]),
    ("2k ops, 1 key, 20 clients, 20% lost, unique values",
     ["--ops", "2000", "--concurrency", "20", "--lost", "0.2"]),
    ("2k ops, 1 key, 20 clients, 20% lost, unique, one stale read",
     ["--ops", "2000", "--concurrency", "20", "--lost", "0.2", "--plant-stale-read"]),
    ("2k ops, 1 key, 5 clients, 20% lost, values 0-4",
     ["--ops", "2000", "--concurrency", "5", "--lost", "0.2", "--values", "range:5"]),
    ("2k ops, 1 key, 20 clients, 20% lost, values 0-4",
     ["--ops", "2000", "--concurrency", "20", "--lost", "0.2", "--values", "range:5"]),
]
with tempfile.TemporaryDirectory() as tmp:
    for label, args in cases:
        path = os.path.join(tmp, "h.jsonl")
        subprocess.run([FAULTLINE, "synth", *args, "--seed", "1", "-o", path], check=True)
        global_repeat = REPEAT
        REPEAT = "1"
        v, wall = check(path, "cas-register", None, ["--time-limit", "120"])
        REPEAT = global_repeat
        print(f"{label:64} {v['verdict']:8} {v['check_ms']:9.1f} {wall * 1000:8.1f} "
              f"{v['peak_rss_kb'] / 1024:8.1f}")
