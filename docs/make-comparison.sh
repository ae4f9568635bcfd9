#!/usr/bin/env bash
# Regenerates the tables of docs/comparison.md (run from the repository root after `make build`).
set -euo pipefail
B=.build/release/moesim
$B compare --config configs/compare-mixtral-a100.yaml --budgets 12.5%,25%,37.5% --markdown docs/generated/compare-mixtral-a100.md > /dev/null
$B compare --config configs/compare-deepseek-v2-lite.yaml --budgets 10%,25%,50% --markdown docs/generated/compare-deepseek-v2-lite.md > /dev/null
