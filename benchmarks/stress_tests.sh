#!/usr/bin/env bash
# The test suite under stress: several full runs in a row, each in a fresh random order
# (pytest-randomly), alternating OMP_NUM_THREADS=1 and 2, while a CPU burner keeps one core busy.
#
#   bash benchmarks/stress_tests.sh                 # 3 runs: OMP_NUM_THREADS=1, 2, 1
#   RUNS=4 bash benchmarks/stress_tests.sh -m 'not slow'   # extra arguments go to pytest
#
# Run it from a checkout with .venv installed (`make install-test`) and, for the STAC API tests,
# `bash .ci/install-stac-server`. Each run's seed, thread count, outcome and wall time go to
# $LOG (default benchmarks/results/stress_tests_cpu.md); a failing run's seed replays its order:
#   .venv/bin/python -m pytest -p randomly --randomly-seed=SEED
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
LOG="${LOG:-benchmarks/results/stress_tests_cpu.md}"
export ACKD_BENCH_CACHE="${ACKD_BENCH_CACHE:-$PWD/.cache}"
PYTHON=.venv/bin/python
if [ ! -x "$PYTHON" ]; then
  echo "error: $PYTHON not found; run 'make install-test' first" >&2
  exit 1
fi

# The burner: one busy process (a pure-Python loop holds one core), ended with this script.
$PYTHON -c 'while True: pass' &
BURNER=$!
trap 'kill $BURNER 2>/dev/null' EXIT

mkdir -p "$(dirname "$LOG")"
# Each invocation appends a section, so the log keeps its history.
if [ ! -s "$LOG" ]; then
  printf '# Test suite under stress\n\nProduced by `benchmarks/stress_tests.sh`.\n' > "$LOG"
fi
{
  echo
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) — $(git rev-parse --short HEAD 2>/dev/null || echo '?'), pytest args: ${*:-(none)}"
  echo
  echo "Machine: $(nproc) cores, $($PYTHON -c 'import platform; print(platform.processor() or platform.machine())'); "\
"numpy SIMD: $($PYTHON -c 'import numpy as np; from numpy._core._multiarray_umath import __cpu_baseline__ as b, __cpu_dispatch__ as d; print(len(b), "baseline,", len(d), "dispatch targets")' 2>/dev/null || echo '?')"
  echo "Burner: one busy Python process"
  echo
  echo "| run | OMP_NUM_THREADS | seed | outcome | wall (s) |"
  echo "|---|---|---|---|---|"
} >> "$LOG"

status=0
for i in $(seq 1 "$RUNS"); do
  threads=$(( (i - 1) % 2 + 1 ))
  seed=$(( (RANDOM << 15) | RANDOM ))
  start=$(date +%s)
  OMP_NUM_THREADS=$threads $PYTHON -m pytest -q -p randomly --randomly-seed="$seed" -p no:cacheprovider "$@" \
    > "/tmp/stress_run_$i.log" 2>&1
  rc=$?
  wall=$(( $(date +%s) - start ))
  outcome=$(tail -n 1 "/tmp/stress_run_$i.log" | tr -d '=' | sed 's/^ *//; s/ *$//')
  echo "| $i | $threads | $seed | $outcome | $wall |" >> "$LOG"
  echo "run $i (OMP_NUM_THREADS=$threads, seed $seed): $outcome in $wall s"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E '^(FAILED|ERROR)' "/tmp/stress_run_$i.log" | sed 's/^/    /' | tee -a "$LOG"
  fi
done
exit $status
