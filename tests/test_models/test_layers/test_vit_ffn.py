"""ViTFFN: mmcv's FFN with the same keys and outputs, timm's stochastic
depth (same distribution, fewer kernels) and no per-call signature
inspection."""
import inspect

import pytest
import torch
from mmcv.cnn.bricks.transformer import FFN

from mmseg_segvit.models.layers import ViTEncoderLayer, ViTFFN

CFG = dict(
    embed_dims=16,
    feedforward_channels=32,
    num_fcs=2,
    ffn_drop=0.0,
    act_cfg=dict(type='GELU'))


def _pair(drop_prob=0.0):
    layer = dict(CFG)
    if drop_prob:
        layer['dropout_layer'] = dict(type='DropPath', drop_prob=drop_prob)
    ref, ffn = FFN(**layer), ViTFFN(**layer)
    ffn.load_state_dict(ref.state_dict())  # strict: same keys
    return ref, ffn


@pytest.mark.parametrize('drop_prob', [0.0, 0.3])
def test_vit_ffn_equals_mmcv_ffn_in_eval(drop_prob):
    ref, ffn = _pair(drop_prob)
    ref.eval()
    ffn.eval()
    x, identity = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    torch.testing.assert_close(ffn(x), ref(x))
    torch.testing.assert_close(
        ffn(x, identity=identity), ref(x, identity=identity))
    ref.add_identity = ffn.add_identity = False
    torch.testing.assert_close(ffn(x), ref(x))


def test_vit_ffn_stochastic_depth_keeps_or_drops_whole_samples():
    """Each sample's branch is either dropped (output = identity) or kept
    and scaled by 1 / keep, at the configured rate, as mmcv's DropPath."""
    torch.manual_seed(0)
    _, ffn = _pair(drop_prob=0.25)
    ffn.train()
    x = torch.randn(4000, 3, 16, requires_grad=True)
    branch = ffn.gamma2(ffn.layers(x))  # no dropout inside: ffn_drop=0
    out = ffn(x) - x
    dropped = out.abs().amax(dim=(1, 2)) == 0
    kept = ~dropped
    torch.testing.assert_close(out[kept], branch[kept] / 0.75)
    assert abs(dropped.float().mean().item() - 0.25) < 0.03
    # the gradient through the branch vanishes for dropped samples only
    grad = torch.autograd.grad(out.sum(), x)[0]
    assert (grad[dropped] == 0).all()
    assert (grad[kept].abs().amax(dim=(1, 2)) > 0).all()


def _kernel_ops(module, x):
    with torch.profiler.profile() as prof:
        module(x).sum().backward()
    names = [e.name for e in prof.events()]
    return sum(
        n in ('aten::rand', 'aten::floor', 'aten::bernoulli_',
              'aten::uniform_') for n in names), names


def test_vit_ffn_draws_one_bernoulli_mask():
    ref, ffn = _pair(drop_prob=0.5)
    ref.train()
    ffn.train()
    x = torch.randn(2, 5, 16, requires_grad=True)
    _, ref_names = _kernel_ops(ref, x)
    _, names = _kernel_ops(ffn, x)
    assert 'aten::floor' in ref_names  # mmcv: rand + floor
    assert 'aten::floor' not in names and 'aten::rand' not in names
    assert names.count('aten::bernoulli_') == 1


def test_vit_ffn_forward_does_not_inspect_signatures(monkeypatch):
    calls = []
    real = inspect.getfullargspec
    monkeypatch.setattr(inspect, 'getfullargspec',
                        lambda f: calls.append(f) or real(f))
    import mmengine.utils.misc as misc
    monkeypatch.setattr(misc, 'getfullargspec', inspect.getfullargspec)
    ref, ffn = _pair()
    x = torch.randn(1, 2, 16)
    ref(x)
    assert calls  # mmcv's wrapper inspects on every call
    calls.clear()
    ffn(x)
    assert calls == []


def test_vit_layer_builds_vit_ffn_with_mmseg_arguments():
    layer = ViTEncoderLayer(
        embed_dims=16,
        num_heads=2,
        feedforward_channels=32,
        drop_path_rate=0.1)
    assert type(layer.ffn) is ViTFFN
    assert layer.ffn.dropout_layer.drop_prob == pytest.approx(0.1)
    assert 'ffn.layers.0.0.weight' in layer.state_dict()
