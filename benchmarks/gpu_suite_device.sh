#!/usr/bin/env bash
# Runs benchmarks/gpu_suite.py on a lent GPU machine (the `device` tool's H100/H200) in one call.
#
# That machine's image has torch, timm, numpy, pandas, scipy, pyyaml and tqdm, but not POT, which
# SemBridge's Sinkhorn planner and transport diagnostics import. Before the call, here:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl pot==0.9.7.post1
#
# (.whl/ is git-ignored, so the call names it in `carry`), then run this script there:
#
#   bash benchmarks/gpu_suite_device.sh            # extra arguments go to gpu_suite.py
#
# The training code imports no geo stack (geopandas, rasterio, ...), so nothing else is needed.
# The JSON, the log and nvidia-smi's view of the card land in $OUT (or benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
SITE=/tmp/ackd-site
if ! ls .whl/pot-*.whl >/dev/null 2>&1; then
  echo "error: no POT wheel in .whl/; download it first (see the top of $0)" >&2
  exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$SITE" .
export PYTHONPATH="$SITE" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
python3 benchmarks/gpu_suite.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_suite.log"
