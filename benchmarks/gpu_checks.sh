#!/usr/bin/env bash
# The checks only a CUDA machine can make, as one run of under 10 minutes:
#   tests    the test suite on CUDA (not the slow end-to-end runs), the
#            files whose code paths change where CUDA exists first; the
#            verbose log goes to results/cuda-tests.log, failures are listed
#            even if the time limit stops the run;
#   bf16     the SegViT models beside MMSeg's Segmenter in bf16 (latency,
#            throughput, training step, memory, kernels), eager;
#   ddp      the demo config trained (500 iterations) and tested through
#            mmseg's tools with --launcher pytorch on one GPU (torchrun):
#            CUDA distributed training end to end, and the demo mIoU on a
#            GPU beside the CPU's (configs/segvit/README.md#demo);
#   compile  ViT-B eager beside torch.compile (throughput, training step);
#   fp32     the ViT-B rows in fp32 (not in the default STEPS).
# STEPS (default tests,bf16,ddp,compile) picks some.
# Tables and logs go to benchmarks/results/ (or $OUT/results when $OUT is
# set).
#
# Usage: bash benchmarks/gpu_checks.sh [WHEEL_DIR]
#   WHEEL_DIR: wheels to install first (pip --no-index) where the machine has
#   torch but not the OpenMMLab packages (`bash benchmarks/gpu_wheels.sh`
#   downloads them into .whl); they go to a private folder put on
#   PYTHONPATH.
# DEVICE=cpu runs the same steps on the CPU at toy sizes (the tools without
# a launcher), to check this script where no GPU is at hand
# (tests/test_benchmarks runs it so); MODELS=... changes the bf16 rows.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-tests,bf16,ddp,compile}
RESULTS=${OUT:+$OUT/}results
[ -n "${OUT:-}" ] || RESULTS=benchmarks/results
mkdir -p "$RESULTS"
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
table() { grep -v -i warn | grep -A12 '^| model' | head -12; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ -n "${1:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target /tmp/segvit-site "$1"/*.whl || exit 1
  export PYTHONPATH=/tmp/segvit-site:$PYTHONPATH
fi
if [ "$DEVICE" = cuda ]; then
  python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA"' \
    || exit 1
  BENCH=(--device cuda)
  TEST_TIME=120 ITERS=500
  DEMO_OPTS=(env_cfg.dist_cfg.backend=nccl)  # the whole demo recipe
  # one process on one GPU through torchrun (mmengine's init needs CUDA)
  RUNNER=(python3 -m torch.distributed.run --standalone --nproc_per_node=1)
  LAUNCHER=pytorch
else  # the dry run: toy sizes, CPU, tools without a launcher
  BENCH=(--device cpu --crop 64 --batch 1 --train-batch 1 --warmup 0
         --iters 1)
  TEST_TIME=60 ITERS=2
  DEMO_OPTS=(train_cfg.max_iters=2 train_cfg.val_interval=2
             default_hooks.checkpoint.interval=2)
  RUNNER=(python3) LAUNCHER=none
fi
MODELS=${MODELS:-segvit-b,segvit-b-fast,segvit-l,segvit-shrunk-l,segmenter-b}

run() { case ",$STEPS," in *",$1,"*) return 0;; esac; return 1; }

if run tests; then
  step "tests on $DEVICE (first: the files whose paths change with CUDA)"
  log=$RESULTS/cuda-tests.log
  timeout "$TEST_TIME" python3 -m pytest -v -p no:cacheprovider \
    -o addopts="" --tb=short -m "not slow" \
    tests/test_models/test_amp.py \
    tests/test_models/test_layers/test_mask_combination.py \
    tests/test_models/test_layers/test_weight_casts.py \
    tests/test_models/test_compile.py tests/test_utils \
    tests/test_tools/test_inference.py tests/test_checkpoints \
    tests/test_models tests > "$log" 2>&1
  echo "exit $? (124: stopped at ${TEST_TIME} s); $(grep -c PASSED "$log") passed"
  grep -E '(FAILED|ERROR)( |$)' "$log" | grep '::' | head -30
  tail -n 3 "$log"
fi
if run bf16; then
  step "bf16, eager"
  timeout 150 python3 benchmarks/bench_models.py "${BENCH[@]}" --dtype bf16 \
    --models "$MODELS" --metrics latency,throughput,train,memory,ops \
    --out-dir "$RESULTS" 2>&1 | table
fi
if run ddp; then
  step "demo config, $DEVICE, train $ITERS iterations and test (--launcher)"
  tools=$(python3 -c 'import mmseg, os.path as p; print(p.join(p.dirname(mmseg.__file__), ".mim", "tools"))')
  config=configs/segvit/segvit_vit-t8_1xb8-500iter_shapes-128x128.py
  work=/tmp/segvit-ddp-demo
  rm -rf "$work"
  timeout 100 "${RUNNER[@]}" "$tools/train.py" $config --launcher $LAUNCHER \
    --work-dir "$work" --cfg-options "${DEMO_OPTS[@]}" > "$RESULTS/ddp-train.log" 2>&1
  echo "train exit $?"
  grep -E 'Iter\(train\)|aAcc|Error' "$RESULTS/ddp-train.log" | tail -n 2
  timeout 60 "${RUNNER[@]}" "$tools/test.py" $config \
    "$(cat "$work/last_checkpoint")" --launcher $LAUNCHER \
    --work-dir "$work/test" \
    > "$RESULTS/ddp-test.log" 2>&1
  echo "test exit $?"
  grep -E 'aAcc|Error' "$RESULTS/ddp-test.log" | tail -n 2
fi
if run compile; then
  step "bf16, ViT-B eager beside torch.compile"
  timeout 180 python3 benchmarks/bench_models.py "${BENCH[@]}" --dtype bf16 \
    --models segvit-b --compile --iters 3 --tag compile \
    --metrics throughput,train,ops --out-dir "$RESULTS" 2>&1 | table
fi
if run fp32; then
  step "fp32, eager"
  timeout 60 python3 benchmarks/bench_models.py "${BENCH[@]}" --dtype fp32 \
    --models segvit-b,segmenter-b --iters 3 \
    --metrics latency,throughput,train,memory,ops --out-dir "$RESULTS" \
    2>&1 | table
fi
step "done"
