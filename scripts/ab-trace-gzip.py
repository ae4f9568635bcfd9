#!/usr/bin/env python3
"""Interleaved A/B of writing a gzip trace at level 9 (gzip's default, moesim-trace before) and 6 (now), on one
builder of 20,000 seeded tokens of 8 layers, top-6 of 64, with weights: the time of each round and their ratio.
Usage: python3 scripts/ab-trace-gzip.py [rounds]"""
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from moesim_trace import TraceBuilder  # noqa: E402

rng = random.Random(0)
builder = TraceBuilder(layers=8, experts=64, top_k=6, source="ab-trace-gzip")
for t in range(20000):
    cells = [rng.sample(range(64), 6) for _ in range(8)]
    weights = [sorted((rng.random() for _ in range(6)), reverse=True) for _ in range(8)]
    builder.add(seq=t // 2048, pos=t % 2048, phase="prefill", experts=cells, weights=weights)


def write(level, path):
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=level) as f:
        f.write(json.dumps(builder.header, separators=(",", ":")) + "\n")
        for line in builder.lines:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")


folder = tempfile.mkdtemp()
times = {9: [], 6: []}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    for level in (9, 6):
        start = time.perf_counter()
        write(level, os.path.join(folder, f"{level}.jsonl.gz"))
        times[level].append(time.perf_counter() - start)
    print(f"round {r + 1}: level 9 {times[9][-1]:.3f} s, level 6 {times[6][-1]:.3f} s, ratio {times[6][-1] / times[9][-1]:.3f}")
sizes = {level: os.path.getsize(os.path.join(folder, f"{level}.jsonl.gz")) for level in times}
print(f"median: level 9 {statistics.median(times[9]):.3f} s, level 6 {statistics.median(times[6]):.3f} s; "
      f"files {sizes[9]} and {sizes[6]} bytes ({sizes[6] / sizes[9]:.3f}x)")
for level in times:
    os.remove(os.path.join(folder, f"{level}.jsonl.gz"))
os.rmdir(folder)
