#!/usr/bin/env bash
# Regenerates docs/generated/validation.md and .csv and the table in docs/validation.md: published figures of
# mixtral-offloading (arXiv 2312.17238, Table 2) and Pre-gated MoE (arXiv 2308.12066) beside moesim's, each setting
# mapped to model, hardware and runtime presets with no per-figure fitting (scripts/validation.py says how), and a
# held-out check of the mixtral-offloading table with its one missing figure solved from the paper's A100 rows, and
# every row with that figure read instead from a public HQQ measurement (nothing fitted).
# Run from the repository root; builds the release binary when absent. About 2 s of replays.
#   bash docs/make-validation.sh            # regenerate the tables
#   bash docs/make-validation.sh --short --check   # CI: one setting per paper; fails when an ordering a paper
#                                                   # reports is lost or a figure moves >30% from the recorded one
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .build/release/moesim ] || swift build -c release --product moesim
if [ $# -eq 0 ]; then
  python3 scripts/validation.py --write > /dev/null
  echo "wrote docs/generated/validation.md, validation.csv, validation-held-out.md and validation-sourced.md, and their tables in docs/validation.md"
else
  python3 scripts/validation.py "$@"
fi
