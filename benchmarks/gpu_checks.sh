#!/usr/bin/env bash
# The checks only a CUDA machine can make, as one run of about 10 minutes:
#   1. the test suite on CUDA (not the slow end-to-end runs),
#   2. the SegViT models beside MMSeg's Segmenter in bf16 (latency,
#      throughput, training step, memory, kernels), eager, then ViT-B eager
#      beside torch.compile,
#   3. the ViT-B rows in fp32 (eager).
# STEPS (default tests,bf16,compile,fp32) picks some; the whole run fits
# the 10 minutes of one device call.
# Tables go to benchmarks/results/ (or $OUT/results when $OUT is set).
#
# Usage: bash benchmarks/gpu_checks.sh [WHEEL_DIR]
#   WHEEL_DIR: wheels to install first (pip --no-index) where the machine has
#   torch but not the OpenMMLab packages; they go to a private folder put on
#   PYTHONPATH.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
STEPS=${STEPS:-tests,bf16,compile,fp32}
RESULTS=${OUT:+$OUT/}results
[ -n "${OUT:-}" ] || RESULTS=benchmarks/results
mkdir -p "$RESULTS"
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
table() { grep -v -i warn | grep -A12 '^| model' | head -12; }

if [ -n "${1:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target /tmp/segvit-site "$1"/*.whl || exit 1
  export PYTHONPATH=/tmp/segvit-site:$PWD
fi
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA"' || exit 1

run() { case ",$STEPS," in *",$1,"*) return 0;; esac; return 1; }

if run tests; then
  step "tests on CUDA"
  workers=$(python3 -c 'import os; print(min(8, os.cpu_count() or 1))')
  xdist=$(python3 -c 'import xdist' 2>/dev/null && echo "-n $workers")
  timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts="" \
    --tb=short -m "not slow" $xdist 2>&1 | tail -15
fi
if run bf16; then
  step "bf16, eager"
  timeout 150 python3 benchmarks/bench_models.py --device cuda --dtype bf16 \
    --models segvit-b,segvit-b-fast,segvit-l,segvit-shrunk-l,segmenter-b \
    --metrics latency,throughput,train,memory,ops --out-dir "$RESULTS" \
    2>&1 | table
fi
if run compile; then
  step "bf16, eager beside torch.compile"
  timeout 240 python3 benchmarks/bench_models.py --device cuda --dtype bf16 \
    --models segvit-b,segmenter-b --compile --iters 3 --tag compile \
    --metrics latency,throughput,train,memory,ops --out-dir "$RESULTS" \
    2>&1 | table
fi
if run fp32; then
  step "fp32, eager"
  timeout 60 python3 benchmarks/bench_models.py --device cuda --dtype fp32 \
    --models segvit-b,segmenter-b --iters 3 \
    --metrics latency,throughput,train,memory,ops --out-dir "$RESULTS" \
    2>&1 | table
fi
step "done"
