#!/usr/bin/env bash
# moesim's LRU replay beside a bare C LRU (scripts/c-lru/lru.c) on the same stream: the 32-layer x 256-expert top-8
# decode trace of `moesim bench` (seed 42, 1 M accesses by default), budget 25% (2048 experts). Checks that both
# count the same hits, then times ROUNDS interleaved rounds: the C loop (loading not timed) and `moesim bench
# --filter lru-256x32-top8 --runs 1` (replay only); prints both rates and their ratio per round, and the medians.
# Usage: scripts/c-lru.sh [BINARY] [ROUNDS] [ACCESSES]
set -euo pipefail
BIN=${1:-.build/release/moesim}
ROUNDS=${2:-5}
ACCESSES=${3:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
cc -O2 -o "$work/lru" "$here/c-lru/lru.c"
tokens=$((ACCESSES / 256))
model=(--model qwen3-30b-a3b --set model.layers=32 --set model.experts=256)
"$BIN" trace gen "${model[@]}" --tokens "$tokens" --sequences 8 --prefill 0 --seed 42 --out "$work/t.moet" > /dev/null
read -r accesses c_hits _ < <("$work/lru" "$work/t.moet" 2048)
m_hits=$("$BIN" replay "$work/t.moet" "${model[@]}" --hardware a100-80gb-pcie --policy lru --budget 25% \
    --out "$work/r.csv" | sed -nE 's/.*hits ([0-9]+),.*/\1/p')
echo "$accesses accesses; hits: C $c_hits, moesim $m_hits ($([ "$c_hits" = "$m_hits" ] && echo same || echo DIFFERENT))"
for r in $(seq "$ROUNDS"); do
    read -r _ _ seconds < <("$work/lru" "$work/t.moet" 2048)
    "$BIN" bench --filter lru-256x32-top8 --runs 1 --accesses "$ACCESSES" --csv "$work/b.csv" > /dev/null
    m_rate=$(awk -F, '$1 == "lru-256x32-top8" && $2 == "replay_accesses_per_s" { print $3 }' "$work/b.csv")
    echo "$r $(echo "$accesses / $seconds" | bc -l) $m_rate" >> "$work/rates"
done
python3 - "$work/rates" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for r, c, m in rows:
    print(f"round {r}: C {float(c) / 1e6:.1f} M accesses/s, moesim {float(m) / 1e6:.1f} M, moesim / C {float(m) / float(c):.2f}")
c = statistics.median(float(x[1]) for x in rows); m = statistics.median(float(x[2]) for x in rows)
ratio = statistics.median(float(x[2]) / float(x[1]) for x in rows)
print(f"medians: C {c / 1e6:.1f} M accesses/s, moesim {m / 1e6:.1f} M; moesim / C {ratio:.2f} (median of rounds)")
PY
