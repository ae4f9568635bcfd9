#!/usr/bin/env bash
# Writes every strategy's report on every bundled trace and both real traces at three budgets, for a byte-for-byte
# comparison of two builds before and after a change to the replay core (the brief's "same answers first"):
#   scripts/same-answers.sh .build/release/moesim /tmp/before
#   ... change, rebuild ...
#   scripts/same-answers.sh .build/release/moesim /tmp/after && diff -r /tmp/before /tmp/after
# The real traces are read from ../shared/traces-real when it exists (skipped, with a note, when absent).
set -euo pipefail
bin=${1:?usage: same-answers.sh MOESIM_BINARY OUTPUT_DIR}
out=${2:?usage: same-answers.sh MOESIM_BINARY OUTPUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

traces=("$root"/traces/*-synth.jsonl.gz)
real="$root/../shared/traces-real"
if [ -d "$real" ]; then traces+=("$real"/*.jsonl); else echo "note: $real is absent; real traces skipped" >&2; fi

for trace in "${traces[@]}"; do
  name=$(basename "$trace"); name=${name%.gz}; name=${name%.jsonl}
  model=$( (zcat -f "$trace" | head -n 1 || true) | sed -E 's/.*"model":"([^"]*)".*/\1/')
  case "$model" in *ixtral*) model=mixtral-8x7b ;; esac
  for scope in global per-layer; do
    cat > "$work/$name-$scope.yaml" <<YAML
trace: $trace
model: $model
hardware: a100-80gb-pcie
budget: 25%
cache_scope: $scope
precision: {threshold: 0.3, low_bits: 4}
YAML
    # per-layer needs every layer's largest working set in budget / layers: decode traces, larger budgets.
    budgets=10%,25%,50%
    [ "$scope" = per-layer ] && budgets=25%,50%,75%
    (cd "$work" && "$bin" compare --config "$name-$scope.yaml" --budgets "$budgets" --out "$out/$name-$scope.csv" >/dev/null) \
      || echo "note: $name $scope: compare failed (see above)" >&2
  done
  # The same strategies with two copy engines sharing the link, under a runtime with overheads, and served in
  # continuous batches with Poisson arrivals: the paths the one-engine, ideal, batch-1 reports above do not reach.
  variants=("engines2:--set hardware.copy_engines=2" "eager:--runtime pytorch-eager"
            "served:--scheduler continuous --max-seqs 4 --arrivals poisson:20:3 --slo-ttft 0.5 --slo-tpot 0.05")
  for variant in "${variants[@]}"; do
    tag=${variant%%:*}; args=${variant#*:}
    # shellcheck disable=SC2086
    (cd "$work" && "$bin" compare --config "$name-global.yaml" --budgets 10%,25%,50% $args \
        --out "$out/$name-$tag.csv" >/dev/null) || echo "note: $name $tag: compare failed (see above)" >&2
  done
done
ls "$out"
