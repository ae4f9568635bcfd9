#!/usr/bin/env bash
# Re-runs the example sweeps and redraws docs/figures (run from the repository root after `make build`).
set -euo pipefail
B=.build/release/moesim
for c in pregated-switch mixtral-consumer fate all; do
  $B sweep configs/sweep-$c.yaml --out reports/sweep-$c.csv --jobs 2 2>/dev/null
done
$B plot reports/sweep-pregated-switch.csv --y tokens_per_s --log-y --out docs/figures/pregated-switch-tokens.svg
$B plot reports/sweep-mixtral-consumer.csv --y tokens_per_s --log-y --out docs/figures/mixtral-consumer-tokens.svg
$B plot reports/sweep-fate.csv --y tokens_per_s --log-y --out docs/figures/fate-tokens.svg
$B plot reports/sweep-all.csv --y tokens_per_s --log-y --out docs/figures/all-tokens.svg
$B plot reports/sweep-all.csv --y hit_rate --out docs/figures/all-hit-rate.svg
