#!/usr/bin/env bash
# Regenerates the error-versus-precision-versus-bytes tables of docs/numerics.md (run from the repository root after
# `make build`): lru at fp16 beside mixed-precision at int8/int4/int2 and three thresholds, with numerics on.
set -euo pipefail
B=.build/release/moesim
$B precision --config configs/compare-mixtral-a100.yaml --markdown docs/generated/precision-mixtral-a100.md > /dev/null
$B precision --config configs/compare-deepseek-v2-lite.yaml --markdown docs/generated/precision-deepseek-v2-lite.md > /dev/null
