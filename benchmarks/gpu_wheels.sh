#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has Python 3.12, torch and numpy, not the
# OpenMMLab stack), for benchmarks/gpu_checks.sh WHEEL_DIR: downloaded here
# for CPython 3.12 on x86-64 Linux, without their dependencies (the list is
# complete for the checks).
#
# Usage: bash benchmarks/gpu_wheels.sh [DIR]   (default .whl, git-ignored)
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
ls "$dir"
