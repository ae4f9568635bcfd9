#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each on a seed corpus made from the bundled traces and configs
# (docs/robustness.md). Called by `make fuzz`:
#   FUZZ_SECONDS=12 Fuzz/run.sh        # CI: every target for 12 s
#   FUZZ_RUNS=1000000 Fuzz/run.sh      # the long run: a million executions per target
#   Fuzz/run.sh fuzz-moet              # one target
# A crash, an out-of-memory or a time-out (one input over 10 s) stops with a non-zero exit; libFuzzer saves the
# input under Fuzz/out/TARGET/ and prints how to reproduce it.
set -euo pipefail
cd "$(dirname "$0")"
root=..
moesim=$root/.build/release/moesim
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-0}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz-jsonl fuzz-moet fuzz-run-config fuzz-sweep-config fuzz-profile)

# lld: the system's gold cannot link Swift with the address sanitizer.
swift_bin=$(dirname "$(readlink -f "$(command -v swift)")")
mkdir -p .build
printf '{"schemaVersion": "1.0", "linker": {"path": "%s/ld.lld"}}\n' "$swift_bin" > .build/toolset.json
for t in "${targets[@]}"; do
  swift build -c release --toolset .build/toolset.json -Xswiftc -sanitize=fuzzer,address --product "$t" 2>&1 | grep -E "error|warning: unre|Compiling fuzz|Build of" || true
  [ -x .build/release/"$t" ] || { echo "error: $t did not build" >&2; exit 1; }
done

# Seed corpora from the bundled files (rebuilt each time; libFuzzer adds what it finds beside them).
corpus=out/corpus
rm -rf "$corpus/seeds"; mkdir -p "$corpus/seeds"/{fuzz-jsonl,fuzz-moet,fuzz-run-config,fuzz-sweep-config,fuzz-profile}
cp "$root"/traces/golden-tiny.jsonl "$corpus/seeds/fuzz-jsonl/"
for t in "$root"/traces/*-synth.jsonl.gz; do
  name=$(basename "$t" .jsonl.gz)
  (zcat "$t" | head -n 12 || true) > "$corpus/seeds/fuzz-jsonl/$name.jsonl"
  (zcat "$t" | head -n 4 || true) | gzip -n > "$corpus/seeds/fuzz-jsonl/$name.jsonl.gz"
  "$moesim" trace convert "$corpus/seeds/fuzz-jsonl/$name.jsonl" "$corpus/seeds/fuzz-moet/$name.moet" > /dev/null
done
"$moesim" trace convert "$root"/traces/golden-tiny.jsonl "$corpus/seeds/fuzz-moet/golden-tiny.moet" > /dev/null
cp "$root"/configs/default.yaml "$root"/configs/compare-*.yaml "$root"/configs/serving-*.yaml "$corpus/seeds/fuzz-run-config/"
cp "$root"/configs/sweep-*.yaml "$corpus/seeds/fuzz-sweep-config/"
# Serving, runtime and placement settings, in a run config and as sweep axes (a small model, so each input replays).
cat > "$corpus/seeds/fuzz-run-config/settings.yaml" <<'YAML'
trace: t.jsonl
model: {preset: mixtral-8x7b, layers: 4, experts: 8}
hardware: a100-80gb-pcie
runtime: {preset: cuda-graph, layer_overhead_s: 0.00002, host_buffer: pageable}
budget: 25%
policies: [static-frequency, n-cpu-moe, pregated]
placement: {train_split: 0.5, cpu_layers: auto, rest: cpu}
prefetch: {buffer: 0.5}
serving: {scheduler: continuous, max_seqs: 4, max_tokens: 64, prefill_chunk: 8, arrivals: "poisson:2:1", slo_ttft_s: 2, slo_tpot_s: 0.2}
YAML
cat > "$corpus/seeds/fuzz-sweep-config/settings.yaml" <<'YAML'
traces: [t.jsonl]
models: [{preset: mixtral-8x7b, layers: 4, experts: 8}]
hardware: [a100-80gb-pcie]
runtime: pytorch-eager
policies: [lru, static-frequency]
serving: {scheduler: static, batch: 2, arrivals: "closed:2:0.5"}
axes:
  budget: [25%, 50%]
  serving.batch: [1, 2]
  runtime.expert_overhead_s: [0, 0.0001]
  placement.train_split: [0.25, 0.5]
YAML
printf 'preset: a100-80gb-pcie\nhost_flops: 1.34e11\nhost_bytes_per_s: 1.42e10\ncopy_engines: 2\n' > "$corpus/seeds/fuzz-profile/host.yaml"
printf 'preset: mixtral-8x7b\ntop_k: 4\nbytes_per_param: 0.5\nshared_experts: 1\n' > "$corpus/seeds/fuzz-profile/model.yaml"

status=0
for t in "${targets[@]}"; do
  mkdir -p "out/$t" "$corpus/$t"
  dict=dict/${t#fuzz-}.dict
  case $t in fuzz-run-config|fuzz-sweep-config|fuzz-profile) dict=dict/yaml.dict ;; esac
  limit=(-max_total_time="$seconds"); [ "$runs" -gt 0 ] && limit=(-runs="$runs")
  log=out/$t/log.txt
  start=$(date +%s)
  set +e
  .build/release/"$t" "$corpus/$t" "$corpus/seeds/$t" "${limit[@]}" -dict="$dict" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="out/$t/" -print_final_stats=1 > "$log" 2>&1
  rc=$?
  set -e
  done_line=$(grep -E "^Done [0-9]+ runs" "$log" | tail -1 || true)
  echo "$t: ${done_line:-no summary} ($(( $(date +%s) - start )) s wall, exit $rc)"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E "ERROR|SUMMARY|Fatal error|Test unit written" "$log" | head -5
  fi
done
exit $status
