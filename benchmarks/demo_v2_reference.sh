#!/usr/bin/env bash
# The demo-v2 reference grid (issue 13): builds the default demo dataset, runs the grid
# (benchmark/grids/demo-v2.yaml: student-only, kd, kd[pairing=oracle], kd[pairing=class-mean],
# dkd, lskd, sembridge; resnet18 → resnet18, `fast`, seeds 0–4) and writes the table, the plot
# and the paired comparisons next to the RunResults.
#
#   bash benchmarks/demo_v2_reference.sh                  # everything (about 2 h on 2 CPU cores)
#   SEEDS="0 1" bash benchmarks/demo_v2_reference.sh      # a subset of seeds; resumable
#   REPORT_ONLY=1 bash benchmarks/demo_v2_reference.sh    # only the table and comparisons
#
# Seeds run one after the other (each a resumable `sweep`), so a run cut short leaves whole seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA="${DATA:-data/demo}"
OUT="${OUT:-benchmarks/results/demo_v2}"
SEEDS="${SEEDS:-0 1 2 3 4}"
if [ -z "${REPORT_ONLY:-}" ]; then
  $BIN/ackd-bench build-dataset --catalog demo --out "$DATA"
  for s in $SEEDS; do
    $BIN/ackd-bench sweep --grid benchmark/grids/demo-v2.yaml --dataset "$DATA" --seeds "$s" --out "$OUT" --quiet
  done
fi
$BIN/ackd-bench table "$OUT" --format md --out "$OUT.table.md" --plot "$OUT.table.png"
# Every method against KD with random same-class partners (the ACKD default) ...
$BIN/ackd-bench compare "$OUT" --baseline kd --dataset "$DATA" --out "$OUT.compare_kd.md"
# ... against the oracle control (is class-mean below it?) and against the student alone.
$BIN/ackd-bench compare "$OUT" --baseline "kd[pairing=oracle]" --dataset "$DATA" --out "$OUT.compare_oracle.md"
$BIN/ackd-bench compare "$OUT" --baseline student-only --dataset "$DATA" --out "$OUT.compare_student_only.md"
cat "$OUT.table.md" "$OUT.compare_kd.md" "$OUT.compare_oracle.md" "$OUT.compare_student_only.md"
