"""Benchmark scripts: speed, memory and operator counts of SegViT beside the
models it competes with.

Run each from the checkout's root as ``python -m benchmarks.<name>``;
:mod:`benchmarks.common` holds what they share (the models, their builder, the
fake batch, the timing).
"""
import mmseg_segvit  # noqa: F401  (its compat steps before mmseg's imports)
