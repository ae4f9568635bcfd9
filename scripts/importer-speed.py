#!/usr/bin/env python3
"""Times `moesim-trace import vllm` and `import npy` on a generated routing array (issue 29's case: 100,000 tokens x
26 layers x top-6 of 64 experts, the DeepSeek-V2-Lite shape), as a new user runs them: a child process each, its
wall time and peak memory (getrusage of the child), the output's uncompressed size. With --against OLD_PYTHON_DIR
(a python/ folder of another checkout, e.g. `git archive OLD python | tar -x -C /tmp/old`), the same commands with
that tree, interleaved round by round. Writes a CSV (default docs/generated/importer-speed.csv).

    python3 scripts/importer-speed.py [--tokens 100000] [--runs 3] [--against /tmp/old/python]
"""
import argparse
import base64
import csv
import gzip
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_inputs(folder, tokens, layers=26, experts=64, top_k=6, prompt=1000):
    rng = np.random.default_rng(1)
    ids = np.argsort(rng.random((tokens, layers, experts), dtype=np.float32), axis=2)[:, :, :top_k].astype(np.int32)
    buf = io.BytesIO()
    np.save(buf, ids)
    raw = buf.getvalue()
    npy = os.path.join(folder, "routed.npy")
    with open(npy, "wb") as f:
        f.write(raw)
    response = os.path.join(folder, "response.json")
    with open(response, "w") as f:
        json.dump({"choices": [{"index": 0, "routed_experts": base64.b64encode(raw).decode()}],
                   "usage": {"prompt_tokens": prompt, "completion_tokens": tokens - prompt + 1}}, f)
    return {"vllm": ["vllm", response, "--experts", str(experts)],
            "npy": ["npy", npy, "--prompt-tokens", str(prompt), "--experts", str(experts)]}


def run(python_dir, args, out):
    """(seconds, peak MiB) of one import in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moesim_trace.cli", "import"] + args + ["--out", out], cwd=python_dir,
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: the benchmark runs each import from a fresh parent
    # (`--one`), so it is this import's.
    return seconds, max(peak, before) / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--against", help="the python/ folder of another checkout, run interleaved")
    p.add_argument("--csv", default=os.path.join(HERE, "..", "docs", "generated", "importer-speed.csv"))
    if sys.argv[1:2] == ["--one"]:  # internal: one import in this fresh process; prints seconds and peak MiB
        python_dir, out, *args = sys.argv[2:]
        seconds, peak = run(python_dir, args, out)
        print(f"{seconds} {peak}")
        return
    a = p.parse_args()
    trees = {"this": os.path.join(HERE, "..", "python")}
    if a.against:
        trees["against"] = a.against
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        commands = make_inputs(folder, a.tokens)
        out = os.path.join(folder, "out.jsonl.gz")
        results = {}
        for _ in range(a.runs):
            for name, args in commands.items():
                for tree, path in trees.items():
                    # A fresh parent per import, so that its children's peak memory is this import's alone.
                    text = subprocess.run([sys.executable, __file__, "--one", path, out] + args, check=True,
                                          capture_output=True, text=True).stdout.split()
                    results.setdefault((name, tree), []).append((float(text[0]), float(text[1])))
        with gzip.open(out, "rb") as f:
            uncompressed = len(f.read())
        for (name, tree), values in results.items():
            seconds = statistics.median(v[0] for v in values)
            peak = max(v[1] for v in values)
            rows.append([name, tree, a.tokens, f"{seconds:.3f}", f"{a.tokens / seconds:.0f}", f"{peak:.1f}",
                         f"{uncompressed / 2**20:.1f}", f"{peak * 2**20 / uncompressed:.2f}"])
            print(f"import {name} ({tree}): {a.tokens / seconds:,.0f} tokens/s (median of {len(values)}: {seconds:.2f} s), "
                  f"peak {peak:.0f} MiB = {peak * 2**20 / uncompressed:.2f}x the output's {uncompressed / 2**20:.1f} MiB uncompressed")
    os.makedirs(os.path.dirname(os.path.abspath(a.csv)), exist_ok=True)
    tmp = a.csv + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["importer", "tree", "tokens", "seconds", "tokens_per_s", "peak_mib", "output_mib", "peak_over_output"])
        w.writerows(rows)
    os.replace(tmp, a.csv)
    print(f"wrote {a.csv}")


if __name__ == "__main__":
    main()
