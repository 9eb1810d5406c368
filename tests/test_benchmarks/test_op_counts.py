"""Operator counts of one inference and one training step
(benchmarks/op_counts.py)."""
import torch

from benchmarks import common, op_counts
from mmseg_segvit.models.layers import (get_batched_weight_casts,
                                        set_batched_weight_casts)

CPU = torch.device('cpu')


def test_count_ops_counts_kernels_not_views():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    count = op_counts.count_ops(lambda: (a + b).view(-1) * b.view(-1), CPU)
    assert count.leaf == 2  # add, mul; the view launches nothing
    assert count.aten >= 3
    assert count.kernels is None  # CUDA only
    assert dict(count.top) == {'aten::add': 1, 'aten::mul': 1}
    # a matrix product counts even where the CPU runs it through other
    # ops (addmm copies its bias first)
    product = op_counts.count_ops(lambda: torch.addmm(a, a, b), CPU)
    assert 'aten::addmm' in dict(product.top)


def test_inference_and_step_count_a_spec_model():
    model = common.build_model(common.SPECS['segvit-b'], 32, tiny=True)
    infer, train = op_counts.inference_and_step(model, 32, 1, 2, CPU, 'fp32')
    assert 0 < infer.leaf <= infer.aten
    assert train.leaf > infer.leaf  # forward, loss and backward


def test_chunking_batches_weight_casts_as_on_cuda_and_restores_them():
    before = get_batched_weight_casts()
    try:
        set_batched_weight_casts(None)  # CUDA's choice
        with op_counts.chunking(CPU, device_chunking=False):
            assert get_batched_weight_casts() is True
        assert get_batched_weight_casts() is None
        set_batched_weight_casts(False)  # off: stays off
        with op_counts.chunking(CPU, device_chunking=False):
            assert get_batched_weight_casts() is False
    finally:
        set_batched_weight_casts(before)
