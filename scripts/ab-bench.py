#!/usr/bin/env python3
"""A/B of replay speed between two moesim binaries, both run as fresh processes, in alternating order.

    scripts/ab-bench.py OLD_BINARY NEW_BINARY --filter pregated --rounds 10

Each round runs `bench --runs 1 --filter F --csv` once per binary, old first in odd rounds and new first in even
ones (so neither always gets the warmer or the cooler machine), and prints per case the median, min and max over
rounds of new accesses/s / old accesses/s. `moesim bench --against` does the same within one process; this script
keeps both builds in the same situation (a fresh process, its own generated trace), which matters on a noisy VM.
"""
import argparse, csv, os, statistics, subprocess, sys, tempfile

def rates(binary, bench_filter, accesses):
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as f:
        path = f.name
    try:
        cmd = [binary, "bench", "--runs", "1", "--filter", bench_filter, "--csv", path]
        if accesses:
            cmd += ["--accesses", str(accesses)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(path, newline="") as f:
            return {r["case"]: float(r["median"]) for r in csv.DictReader(f) if r["metric"] == "replay_accesses_per_s"}
    finally:
        os.unlink(path)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old"); p.add_argument("new")
    p.add_argument("--filter", required=True, help="bench --filter: which replay cases")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--accesses", type=int, default=0, help="bench --accesses (default: bench's own)")
    a = p.parse_args()
    ratios = {}
    for r in range(a.rounds):
        order = [("old", a.old), ("new", a.new)] if r % 2 == 0 else [("new", a.new), ("old", a.old)]
        got = {name: rates(binary, a.filter, a.accesses) for name, binary in order}
        for case in got["new"]:
            if case in got["old"] and got["old"][case] > 0:
                ratios.setdefault(case, []).append(got["new"][case] / got["old"][case])
        print(f"round {r + 1}: " + ", ".join(f"{c} {v[-1]:.3f}" for c, v in ratios.items()), file=sys.stderr, flush=True)
    print("case,median_new_over_old,min,max,rounds")
    for case, v in ratios.items():
        print(f"{case},{statistics.median(v):.3f},{min(v):.3f},{max(v):.3f},{len(v)}")

if __name__ == "__main__":
    main()
