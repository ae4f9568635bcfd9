#!/usr/bin/env bash
# Regenerates docs/figures/serving-*.svg and the tables behind docs/serving.md (run from the repository root after
# `make build`): for Mixtral-8x7B and Qwen3-30B-A3B, seeded synthetic traces of 64 requests (16 prompt + 48 output
# tokens each), every strategy below on an A100-80GB PCIe with a quarter of the experts' bytes;
#   - static batches of 1 to 64 requests, all waiting at 0 (throughput against batch size);
#   - continuous batching (up to 64 running) under Poisson arrivals at rising rates (latency against load).
set -euo pipefail
B=.build/release/moesim
out=reports/serving
mkdir -p "$out" docs/figures
for model in mixtral-8x7b qwen3-30b-a3b; do
  $B trace gen --model $model --tokens 4096 --sequences 64 --prefill 16 --seed 11 --out "$out/$model.jsonl.gz" > /dev/null
  case $model in
    mixtral-8x7b) rates='["poisson:0.01", "poisson:0.02", "poisson:0.05", "poisson:0.1", "poisson:0.2"]' ;;
    *) rates='["poisson:0.1", "poisson:0.2", "poisson:0.5", "poisson:1", "poisson:2"]' ;;
  esac
  common="traces: [$PWD/$out/$model.jsonl.gz]
models: [$model]
hardware: [a100-80gb-pcie]
policies: [on-demand, lru, belady, pregated, mixed-precision, cpu-fallback, all-resident]"
  printf '%s\nserving: {scheduler: static}\naxes:\n  budget: [25%%]\n  serving.batch: [1, 2, 4, 8, 16, 32, 64]\n' "$common" > "$out/$model-batch.yaml"
  printf '%s\nserving: {scheduler: continuous, max_seqs: 64, max_tokens: 2048}\naxes:\n  budget: [25%%]\n  serving.arrivals: %s\n' "$common" "$rates" > "$out/$model-rate.yaml"
  for sweep in batch rate; do
    $B sweep "$out/$model-$sweep.yaml" --out "$out/$model-$sweep.csv" --jobs 2 > /dev/null 2>&1
  done
  $B plot "$out/$model-batch.csv" --x batch --y output_tokens_per_s --log-y --out docs/figures/serving-$model-tokens-vs-batch.svg > /dev/null
  $B plot "$out/$model-batch.csv" --x batch --y request_tpot_p99_s --log-y --out docs/figures/serving-$model-tpot-vs-batch.svg > /dev/null
  $B plot "$out/$model-rate.csv" --x arrival_rate --y output_tokens_per_s --log-y --out docs/figures/serving-$model-tokens-vs-rate.svg > /dev/null
  $B plot "$out/$model-rate.csv" --x arrival_rate --y request_tpot_p99_s --log-y --out docs/figures/serving-$model-tpot-vs-rate.svg > /dev/null
done
echo "wrote docs/figures/serving-*.svg from $out/*.csv"
