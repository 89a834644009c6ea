#!/usr/bin/env bash
# The consistency-spectrum experiment (issue 15): one preset (demo-consistency: 100 chips per
# class, one 60/10/30 split for both modalities) built as paired, partial:0.5 and asymmetric from
# the same demo world; the grid benchmark/grids/consistency.yaml (student-only, kd, c2kd,
# distilvpr, sembridge; resnet18 → resnet18, `fast`, seeds 0–4) on each; then the report
# (accuracy per build, each method's gain over student-only per build with paired tests, and the
# measured transport costs per build).
#
#   bash benchmarks/consistency_spectrum.sh                 # everything (about 80 min on 2 CPU cores)
#   SEEDS="0 1" bash benchmarks/consistency_spectrum.sh     # a subset of seeds; resumable
#   REPORT_ONLY=1 bash benchmarks/consistency_spectrum.sh   # only the report
#
# Seeds run one after the other (each a resumable `sweep` over the three builds), so a run cut
# short leaves whole seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA="${DATA:-data}"
OUT="${OUT:-benchmarks/results/consistency}"
SEEDS="${SEEDS:-0 1 2 3 4}"
BUILDS="paired partial-05 asymmetric"
if [ -z "${REPORT_ONLY:-}" ]; then
  for b in $BUILDS; do
    mode="${b/partial-05/partial:0.5}"
    $BIN/ackd-bench build-dataset --preset demo-consistency --consistency "$mode" --out "$DATA/consistency-$b" --quiet
  done
  for s in $SEEDS; do
    $BIN/ackd-bench sweep --grid benchmark/grids/consistency.yaml --seeds "$s" --out "$OUT" --quiet \
      --dataset "$DATA/consistency-paired" --dataset "$DATA/consistency-partial-05" --dataset "$DATA/consistency-asymmetric"
  done
fi
$BIN/python benchmarks/consistency_report.py "$OUT" --dataset "$DATA/consistency-paired" \
  --dataset "$DATA/consistency-partial-05" --dataset "$DATA/consistency-asymmetric" --out "$OUT.report"
