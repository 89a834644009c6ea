#!/usr/bin/env bash
# The paper's claims (issue 15) on the asymmetric consistency build: the claims grid
# (benchmark/grids/claims.yaml: SemBridge's ablations and plug-in pairs, seeds 0–4) and the
# cross-architecture grid (benchmark/grids/cross-arch.yaml: resnet18 → mobilenetv2_100, seeds 0–2),
# into the folder of the consistency experiment (whose student-only, kd, c2kd, distilvpr and
# sembridge runs they are compared with); then the claims table (benchmarks/claims_report.py).
# Run benchmarks/consistency_spectrum.sh first (it builds the datasets).
#
#   bash benchmarks/claims.sh                  # seeds 0–4, cross-arch 0–2 (about 60 min on 2 CPU cores)
#   SEEDS="0 1" bash benchmarks/claims.sh      # a subset of seeds; resumable
#   REPORT_ONLY=1 bash benchmarks/claims.sh    # only the report
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA="${DATA:-data}"
OUT="${OUT:-benchmarks/results/consistency}"
SEEDS="${SEEDS:-0 1 2 3 4}"
ASYM="$DATA/consistency-asymmetric"
if [ -z "${REPORT_ONLY:-}" ]; then
  for s in $SEEDS; do
    $BIN/ackd-bench sweep --grid benchmark/grids/claims.yaml --seeds "$s" --out "$OUT" --quiet --dataset "$ASYM"
  done
  for s in $SEEDS; do
    case "$s" in 0|1|2) $BIN/ackd-bench sweep --grid benchmark/grids/cross-arch.yaml --seeds "$s" --out "$OUT" \
                          --quiet --dataset "$ASYM" ;; esac
  done
fi
$BIN/python benchmarks/claims_report.py "$OUT" --dataset "$ASYM" --out benchmarks/results/claims
