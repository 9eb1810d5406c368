#!/usr/bin/env bash
# Stages what the GPU machine lacks for benchmarks/gpu_checks.sh WHEEL_DIR
# (it has Python 3.12, torch and numpy, not the OpenMMLab stack, and reaches
# no network):
#   *.whl       the wheels, downloaded here for CPython 3.12 on x86-64 Linux
#               without their dependencies (the list is complete for the
#               checks);
#   peers/      the harness that builds the official SegViT code
#               ($SEGVIT_PEERS, default ../shared/gpu/peers beside the
#               checkout), when it exists;
#   SegVit.git  a copy of the git mirror of github zbwxp/SegVit the harness
#               reads the official files from ($SEGVIT_OFFICIAL), when set.
# Carry DIR with the working tree (`run` with carry [".whl"]).
#
# Usage: [SEGVIT_OFFICIAL=MIRROR] bash benchmarks/gpu_wheels.sh [DIR]
#   (default DIR .whl, git-ignored)
set -eu
cd "$(dirname "$0")/.."
dir=${1:-.whl}
mkdir -p "$dir"
python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dir" \
  mmengine==0.10.7 mmsegmentation==1.2.2 mmcv-lite==2.1.0 addict==2.4.0 \
  yapf==0.43.0 termcolor==3.3.0 ftfy==6.3.1 wcwidth==0.2.13 \
  prettytable==3.18.0 platformdirs==4.3.8 setuptools==80.10.2
peers=${SEGVIT_PEERS:-../shared/gpu/peers}
if [ -f "$peers/official.py" ]; then
  rm -rf "$dir/peers" && mkdir -p "$dir/peers"
  cp "$peers"/*.py "$peers"/*.md "$dir/peers/" 2>/dev/null || true
fi
if [ -n "${SEGVIT_OFFICIAL:-}" ]; then
  rm -rf "$dir/SegVit.git"
  git clone -q --bare "$SEGVIT_OFFICIAL" "$dir/SegVit.git"
fi
ls "$dir"
du -sh "$dir"
