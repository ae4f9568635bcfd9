#!/usr/bin/env bash
# A 200-cell sweep as a user runs one (10 strategies, prefetch-all among them, x 20 budgets on a generated
# Mixtral-shaped trace of TOKENS tokens in 8 sequences, default 8192: about 0.5 M accesses a cell), timed
# whole-process with 1 job and with 2, interleaved over ROUNDS rounds; prints the medians and the speed-up, and
# checks that both outputs are the same bytes. Usage: scripts/sweep-speed.sh [BINARY] [ROUNDS] [TOKENS]
set -euo pipefail
BIN=${1:-.build/release/moesim}
ROUNDS=${2:-3}
TOKENS=${3:-8192}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trace=$work/trace.moet
"$BIN" trace gen --tokens "$TOKENS" --sequences 8 --out "$trace" > /dev/null
cat > "$work/sweep.yaml" <<YAML
traces: [$trace]
models: [mixtral-8x7b]
hardware: [a100-80gb-pcie]
policies: [on-demand, lru, fifo, lfu, arc, belady, prefetch-all, pregated, cross-layer-gate, oracle-prefetch]
axes:
  budget: [4%, 8%, 12%, 16%, 20%, 24%, 28%, 32%, 36%, 40%, 44%, 48%, 52%, 56%, 60%, 64%, 68%, 72%, 76%, 80%]
YAML
for r in $(seq "$ROUNDS"); do
    for jobs in 1 2; do
        rm -f "$work/out$jobs.csv"
        start=$(date +%s.%N)
        "$BIN" sweep "$work/sweep.yaml" --out "$work/out$jobs.csv" --jobs "$jobs" > /dev/null 2>&1
        echo "$jobs $(echo "$(date +%s.%N) - $start" | bc)" >> "$work/times"
    done
done
cmp -s "$work/out1.csv" "$work/out2.csv" && same=yes || same=no
python3 - "$work/times" "$(tail -n +2 "$work/out1.csv" | wc -l)" "$same" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    jobs, seconds = line.split()
    times.setdefault(jobs, []).append(float(seconds))
one, two = statistics.median(times["1"]), statistics.median(times["2"])
print(f"{sys.argv[2]} cells: 1 job {one:.2f} s, 2 jobs {two:.2f} s (medians of {len(times['1'])}): "
      f"speed-up {one / two:.2f}x; outputs identical: {sys.argv[3]}")
PY
