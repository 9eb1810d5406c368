#!/usr/bin/env bash
# The checks only a CUDA machine can make, as one run of under 10 minutes:
#   tests    the test files whose code paths change where CUDA exists (AMP,
#            mask combination, weight casts, compile, RNG hook, ...) on
#            CUDA; the verbose log goes to results/cuda-tests.log, failures
#            are listed even if the time limit stops the run;
#   bf16     SegViT ViT-B 512 (faithful and fast order), ViT-L 640 and
#            Shrunk ViT-L 640 of this package, with and without the batched
#            weight casts, beside the OFFICIAL code's three models (same
#            process, same table) and MMSeg's Segmenter and UPerNet ViT-B:
#            latency b1, throughput b16, training step b8 (forward, loss,
#            backward, AdamW step), peak memory, kernels per call; the
#            ratios to the official code of the same run follow the table;
#   fp32     the same models in fp32, without the weight-cast rows;
#   ddp      the demo config trained and tested through mmseg's tools with
#            --launcher pytorch (torchrun, NCCL, one GPU): CUDA distributed
#            training end to end, its mIoU beside the CPU's of the metafile
#            (must be within 1 point);
#   compile  SegViT ViT-B eager beside torch.compile(mode='reduce-overhead')
#            (CUDA graphs), latency and throughput, bf16.
# STEPS (default tests,bf16,fp32,ddp,compile) picks some. Each step has a
# time limit on CUDA (the sums fit 10 minutes); the dry run has none.
# Tables and logs go to benchmarks/results/ (or $OUT/results when $OUT is
# set).
#
# Usage: bash benchmarks/gpu_checks.sh [WHEEL_DIR]
#   WHEEL_DIR: what `bash benchmarks/gpu_wheels.sh` stages (default
#   location .whl, git-ignored; carry it to the GPU machine): the wheels of
#   the OpenMMLab stack the machine lacks, installed with pip --no-index
#   into a private folder put on PYTHONPATH; the official code's harness
#   (peers/) and a git mirror of github zbwxp/SegVit (SegVit.git), used as
#   SEGVIT_PEERS / SEGVIT_OFFICIAL unless those are set.
# DEVICE=cpu runs the same steps on the CPU with every model at 4 blocks of
# 64 channels (benchmarks.bench_models --tiny), 2 demo iterations and the
# tools without a launcher: a dry run of this script in about a minute
# (tests/test_benchmarks runs it so). MODELS=... and FP32_MODELS=...
# change the rows of the bf16 and fp32 tables.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-tests,bf16,fp32,ddp,compile}
RESULTS=${OUT:+$OUT/}results
[ -n "${OUT:-}" ] || RESULTS=benchmarks/results
mkdir -p "$RESULTS"
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
tables() { grep -E '^(\||#|skip|Traceback|[A-Za-z]*Error)' | grep -v -i warn; }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ -n "${1:-}" ]; then
  if ls "$1"/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --target /tmp/segvit-site "$1"/*.whl || exit 1
    export PYTHONPATH=/tmp/segvit-site:$PYTHONPATH
  fi
  [ -d "$1/peers" ] && export SEGVIT_PEERS=${SEGVIT_PEERS:-$PWD/$1/peers}
  [ -d "$1/SegVit.git" ] && \
    export SEGVIT_OFFICIAL=${SEGVIT_OFFICIAL:-$PWD/$1/SegVit.git}
fi
[ -n "${SEGVIT_OFFICIAL:-}" ] || \
  echo "SEGVIT_OFFICIAL unset: the official code's rows are skipped"
OFFICIAL_MODELS=off-b,off-l,off-shrunk-l
if [ "$DEVICE" = cuda ]; then
  python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA"' \
    || exit 1
  BENCH=(--device cuda --warmup 1 --iters 3)
  FP32_BENCH=(--device cuda --warmup 1 --iters 2)
  limit() { timeout "$1" "${@:2}"; }
  DEMO_OPTS=(env_cfg.dist_cfg.backend=nccl)  # the whole demo recipe
  TEST_OPTS=(env_cfg.dist_cfg.backend=nccl)
  # one process on one GPU through torchrun (mmengine's init needs CUDA)
  RUNNER=(python3 -m torch.distributed.run --standalone --nproc_per_node=1)
  LAUNCHER=pytorch
else  # the dry run: tiny models, CPU, no limits, tools without a launcher
  BENCH=(--device cpu --tiny --batch 1 --train-batch 2 --warmup 0
         --iters 2 --min-calls 1 --min-seconds 0 --matmul-size 64)
  FP32_BENCH=("${BENCH[@]}")
  limit() { "${@:2}"; }
  DEMO_OPTS=(train_cfg.max_iters=2 train_cfg.val_interval=2
             default_hooks.checkpoint.interval=2
             val_dataloader.dataset.indices=2)
  TEST_OPTS=(test_dataloader.dataset.indices=2)
  RUNNER=(python3) LAUNCHER=none
fi
OURS=segvit-b,segvit-b-fast,segvit-b-casts,segvit-l,segvit-l-casts
OURS=$OURS,segvit-shrunk-l,segvit-shrunk-l-casts
MODELS=${MODELS:-off-b,$OURS,off-l,off-shrunk-l,segmenter-b,upernet-b}
FP32_DEFAULT=off-b,segvit-b,segvit-b-fast,segvit-l,segvit-shrunk-l
FP32_MODELS=${FP32_MODELS:-$FP32_DEFAULT,off-l,off-shrunk-l,segmenter-b,upernet-b}

run() { case ",$STEPS," in *",$1,"*) return 0;; esac; return 1; }

if run tests; then
  step "tests on $DEVICE: the files whose code paths change with CUDA"
  log=$RESULTS/cuda-tests.log
  limit 75 python3 -m pytest -v -p no:cacheprovider \
    -o addopts="" --tb=short -m "not slow" \
    tests/test_models/test_amp.py \
    tests/test_models/test_layers/test_mask_combination.py \
    tests/test_models/test_layers/test_memory_plan.py \
    tests/test_models/test_layers/test_weight_casts.py \
    tests/test_models/test_compile.py tests/test_engine \
    tests/test_utils tests/test_tools/test_inference.py > "$log" 2>&1
  echo "exit $? (124: stopped at the time limit); $(grep -c PASSED "$log") passed"
  grep -E '(FAILED|ERROR)( |$)' "$log" | grep '::' | head -30
  tail -n 3 "$log"
fi
if run bf16; then
  step "bf16, eager: this package beside the official code and MMSeg"
  limit 240 python3 -m benchmarks.bench_models "${BENCH[@]}" --dtype bf16 \
    --models "$MODELS" --metrics latency,throughput,train,memory,ops \
    --out-dir "$RESULTS" 2>&1 | tables
fi
if run fp32; then
  step "fp32, eager"
  limit 150 python3 -m benchmarks.bench_models "${FP32_BENCH[@]}" \
    --dtype fp32 --models "$FP32_MODELS" \
    --metrics latency,throughput,train,memory --out-dir "$RESULTS" 2>&1 \
    | tables
fi
if run ddp; then
  step "demo config, $DEVICE, trained and tested (--launcher $LAUNCHER)"
  tools=$(python3 -c 'import mmseg, os.path as p; print(p.join(p.dirname(mmseg.__file__), ".mim", "tools"))')
  config=configs/segvit/segvit_vit-t8_1xb8-500iter_shapes-128x128.py
  work=/tmp/segvit-ddp-demo
  rm -rf "$work"
  python3 -m mmseg_segvit.tools.make_demo_data data/segvit_shapes > /dev/null
  limit 110 "${RUNNER[@]}" "$tools/train.py" $config --launcher $LAUNCHER \
    --work-dir "$work" --cfg-options "${DEMO_OPTS[@]}" > "$RESULTS/ddp-train.log" 2>&1
  echo "train exit $?"
  grep -E 'Iter\(train\)|aAcc|Error' "$RESULTS/ddp-train.log" | tail -n 2
  limit 45 "${RUNNER[@]}" "$tools/test.py" $config \
    "$(cat "$work/last_checkpoint")" --launcher $LAUNCHER \
    --work-dir "$work/test" --cfg-options "${TEST_OPTS[@]}" \
    > "$RESULTS/ddp-test.log" 2>&1
  echo "test exit $?"
  grep -E 'aAcc|Error' "$RESULTS/ddp-test.log" | tail -n 2
  python3 -m benchmarks.demo_miou "$config" "$RESULTS/ddp-test.log" \
    $([ "$DEVICE" = cuda ] || echo --dry-run)
fi
if run compile; then
  step "bf16, ViT-B eager beside torch.compile(mode='reduce-overhead')"
  limit 120 python3 -m benchmarks.bench_models "${BENCH[@]}" --dtype bf16 \
    --models segvit-b --compile --compile-mode reduce-overhead \
    --tag compile --metrics latency,throughput --out-dir "$RESULTS" 2>&1 \
    | tables
fi
step "done"
