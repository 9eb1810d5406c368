"""FLOP counting: fused-attention handles, count_flops, the table tool."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fixtures import DEMO_CONFIG, REPO
from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_segvit.deploy import no_mha_fastpath
from mmseg_segvit.models import ATMDecoderLayer
from mmseg_segvit.utils import (ACTIVATION_HANDLES, FLOP_HANDLES, count_flops,
                                flops_summary)

SHRUNK_DEMO = osp.join(REPO, 'configs', 'segvit',
                       'segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128.py')


class _SelfAttention(nn.Module):
    """``mha(x, x, x)``: torch's fast path (native MHA) or SDPA without
    ``need_weights``, the explicit path with it."""

    def __init__(self, mha: nn.MultiheadAttention, need_weights=False):
        super().__init__()
        self.mha = mha
        self.need_weights = need_weights

    def forward(self, x):
        return self.mha(x, x, x, need_weights=self.need_weights)[0]


class _Attention(nn.Module):
    """q @ k^T, softmax, @ v; fused or explicit."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        attn = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5).softmax(-1)
        return attn @ v


def _flops(module, *inputs, grad=False):
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle(**FLOP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.set_grad_enabled(grad):
        return analyzer.total(), analyzer.by_operator()


def test_sdpa_counts_what_the_explicit_matmuls_count():
    q = torch.randn(2, 4, 10, 8)
    k = torch.randn(2, 4, 14, 8)
    v = torch.randn(2, 4, 14, 6)
    fused, ops = _flops(_Attention(True), q, k, v)
    explicit, _ = _flops(_Attention(False), q, k, v)
    assert fused == explicit == 2 * 4 * 10 * 14 * (8 + 6)
    assert set(ops) == {'scaled_dot_product_attention'}


@pytest.mark.parametrize('batch_first, grad', [(True, False), (True, True),
                                               (False, False)])
def test_multihead_attention_counts_the_same_on_every_path(batch_first, grad):
    """Fast path (native MHA), SDPA path and explicit path agree."""
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    x = torch.randn(2, 10, 32) if batch_first else torch.randn(10, 2, 32)

    fused, ops = _flops(_SelfAttention(mha), x, grad=grad)
    with no_mha_fastpath():
        explicit, explicit_ops = _flops(
            _SelfAttention(mha, need_weights=True), x, grad=grad)
    # projections 4 * B L E^2, products 2 * B L^2 E
    assert fused == explicit == 4 * 2 * 10 * 32**2 + 2 * 2 * 10 * 10 * 32
    if batch_first and not grad:
        assert set(ops) == {'_native_multi_head_attention'}
    else:
        assert 'scaled_dot_product_attention' in ops
    assert 'bmm' in explicit_ops


def test_decoder_layers_count_their_attention():
    """torch's decoder layer (QU) and the ATM layer count all products."""
    b, nq, nk, d = 2, 6, 20, 32
    per_layer = (
        4 * nq * d * d + 2 * nq * nq * d  # self-attention
        + 2 * nq * d * d + 2 * nk * d * d + 2 * nq * nk * d  # cross
        + 2 * nq * d * 4 * d)  # FFN
    norms = 3 * nq * d * 5  # mmengine counts 5 per normalised element
    q, mem = torch.randn(b, nq, d), torch.randn(b, nk, d)
    torch_layer = nn.TransformerDecoderLayer(
        d, 4, 4 * d, batch_first=True).eval()
    total, _ = _flops(torch_layer, q, mem)
    assert total == b * (per_layer + norms)
    atm, ops = _flops(ATMDecoderLayer(d, 4).eval(), q, mem)
    assert atm == b * (per_layer + norms)
    assert ops['matmul'] == b * 2 * nq * nk * d


def test_handles_are_registered_for_stock_mmengine_tools(monkeypatch):
    """get_model_complexity_info (used by mmseg's get_flops) counts SDPA once
    register_flop_handles() was called (our get_flops wrapper calls it;
    importing the package does not)."""
    from mmengine.analysis import complexity_analysis

    from mmseg_segvit.utils import register_flop_handles
    table = complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS
    monkeypatch.setattr(complexity_analysis, '_DEFAULT_SUPPORTED_FLOP_OPS',
                        dict(table))
    register_flop_handles()
    q = torch.randn(1, 2, 10, 8)
    info = get_model_complexity_info(
        _Attention(True), inputs=(q, q, q), show_table=False, show_arch=False)
    assert info['flops'] == 2 * 10 * 10 * 16


def _activations(module, *inputs):
    from mmengine.analysis import ActivationAnalyzer
    analyzer = ActivationAnalyzer(module, inputs)
    analyzer.set_op_handle(**ACTIVATION_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total()


def test_activation_handles_count_what_the_explicit_path_counts():
    q = torch.randn(2, 4, 10, 8)
    k = torch.randn(2, 4, 14, 8)
    v = torch.randn(2, 4, 14, 6)
    fused = _activations(_Attention(True), q, k, v)
    assert fused == _activations(_Attention(False), q, k, v)
    assert fused == 2 * 4 * 10 * (14 + 6)

    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 10, 32)

    fast = _activations(_SelfAttention(mha), x)
    with no_mha_fastpath():
        sdpa = _activations(_SelfAttention(mha), x)
    # q, k, v, attn @ v, out proj: 5 B L E; attention maps B heads L S
    assert fast == sdpa == 5 * 2 * 10 * 32 + 2 * 4 * 10 * 10


class _AttentionAndCumsum(_Attention):

    def forward(self, q, k, v):
        return super().forward(q, k, v).cumsum(-1)


def test_complexity_info_warns_only_of_ops_it_cannot_count(monkeypatch):
    """After register_flop_handles(), mmengine's get_model_complexity_info
    (mmseg's get_flops) does not call the fused attention unsupported in its
    FLOP or activation analysis; an op without a handle still warns."""
    from mmengine.analysis import complexity_analysis, jit_analysis

    from mmseg_segvit.utils import register_flop_handles
    from mmseg_segvit.utils.flops import ACTIVATION_HANDLES, FLOP_HANDLES

    # mmengine's own tables, without handles an earlier test registered
    for name, ours in (('_DEFAULT_SUPPORTED_FLOP_OPS', FLOP_HANDLES),
                       ('_DEFAULT_SUPPORTED_ACT_OPS', ACTIVATION_HANDLES)):
        table = {
            op: handle
            for op, handle in getattr(complexity_analysis, name).items()
            if ours.get(op) is not handle
        }
        monkeypatch.setattr(complexity_analysis, name, table)
    logged = []
    monkeypatch.setattr(jit_analysis, 'print_log',
                        lambda msg, *args, **kwargs: logged.append(msg))
    q = torch.randn(1, 2, 10, 8)

    def unsupported():
        logged.clear()
        get_model_complexity_info(
            _AttentionAndCumsum(True),
            inputs=(q, q, q),
            show_table=False,
            show_arch=False)
        return [m for m in logged if m.startswith('Unsupported operator')]

    before = unsupported()
    assert any('scaled_dot_product_attention' in m for m in before), before
    register_flop_handles()
    after = unsupported()
    assert not any('scaled_dot_product_attention' in m for m in after), after
    # the FLOP and the activation analysis each still name cumsum
    assert sum('aten::cumsum' in m for m in after) == 2, after


def _model(path):
    cfg = Config.fromfile(path)
    # random weights: the Shrunk demo would start from the plain demo's
    # checkpoint, which a test run need not have (FLOPs do not depend on it)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def test_shrunk_demo_counts_fewer_flops_than_the_plain_demo():
    plain = count_flops(_model(DEMO_CONFIG), (64, 64))
    shrunk_model = _model(SHRUNK_DEMO)
    shrunk = count_flops(shrunk_model, (64, 64))
    assert 0 < shrunk.total < 0.8 * plain.total
    assert shrunk.by_module['backbone'] < plain.by_module['backbone']
    rows = dict(flops_summary(shrunk_model, shrunk))
    assert rows['QD (backbone.layers.2)'] > 0
    assert rows['QU (backbone.qu)'] > 0
    assert rows['decode_head'] > 0
    assert sum(v for k, v in rows.items() if k != 'total') == shrunk.total
    assert rows['total'] == shrunk.total


def test_predict_mode_adds_the_mask_resize_and_class_combination():
    model = _model(SHRUNK_DEMO)
    tensor = count_flops(model, (64, 64), mode='tensor')
    predict = count_flops(model, (64, 64), mode='predict')
    k = 12
    # einsum over K queries x K classes per pixel (numpy's einsum_path
    # estimate, which mmengine uses, adds a few hundred), bilinear resize
    # 4 per output element
    extra = k * k * 64 * 64 + 4 * k * 64 * 64
    assert predict.total - tensor.total == pytest.approx(extra, abs=500)
    assert predict.by_module['backbone'] == tensor.by_module['backbone']


def test_tensor_mode_equals_mmengine_default_analysis(monkeypatch):
    """What mmseg's get_flops computes (model(inputs), mode 'tensor'), with the
    handles our get_flops wrapper registers."""
    from mmengine.analysis import complexity_analysis

    from mmseg_segvit.utils import register_flop_handles
    monkeypatch.setattr(complexity_analysis, '_DEFAULT_SUPPORTED_FLOP_OPS',
                        dict(complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS))
    register_flop_handles()
    model = _model(SHRUNK_DEMO).eval()
    inputs = torch.randn(1, 3, 64, 64)
    info = get_model_complexity_info(
        model, inputs=(inputs, ), show_table=False, show_arch=False)
    assert info['flops'] == count_flops(
        model, inputs=inputs, mode='tensor').total


def test_count_flops_argument_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match='exactly one'):
        count_flops(model)
    with pytest.raises(ValueError, match='mode'):
        count_flops(model, (4, 4), mode='loss')


def test_get_flops_tool_prints_the_table():
    path = os.environ.get('PYTHONPATH')
    env = dict(
        os.environ, PYTHONPATH=REPO + (os.pathsep + path if path else ''))
    out = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'get_flops.py'), SHRUNK_DEMO, '--shape', '64'
    ],
                         cwd=REPO,
                         env=env,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    lines = out.strip().splitlines()
    assert lines[-1].startswith('GFLOPs: ')
    float(lines[-1].split()[-1])
    for row in ('backbone (ViT layers)', 'QD (backbone.layers.2)',
                'QU (backbone.qu)', 'decode_head', 'total'):
        assert any(line.startswith(row) for line in lines), row


def test_empty_or_negative_shapes_are_refused():
    """Sizes < 1 failed inside torch (``randn``, the patch convolution); a size
    below the patch is valid (the ViT pads it)."""
    from mmseg_segvit.utils.cli import input_shape
    with pytest.raises(ValueError, match=r'sizes >= 1, got \(3, 0, 10\)'):
        count_flops(nn.Conv2d(3, 2, 1), (0, 10))
    with pytest.raises(SystemExit, match=r'--shape -3 8: .* >= 1 pixel'):
        input_shape(Config(), [-3, 8])
    assert input_shape(Config(), [5]) == (5, 5)
    assert count_flops(nn.Conv2d(3, 2, 1), (1, 5)).total == 30
