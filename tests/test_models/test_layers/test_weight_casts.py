"""batched_weight_casts: at inference under autocast the weights are cast
in one multi-tensor copy per call; the outputs are autocast's own, the
module's parameters are untouched, and anywhere else nothing changes."""
import pytest
import torch
from fixtures import run_python, tiny_segmentor_cfg, tiny_shrunk_vit
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from mmseg_segvit.models.layers import (batched_weight_casts,
                                        get_batched_weight_casts,
                                        set_batched_weight_casts)

SIZE = 32
METAS = [
    dict(
        img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE))
] * 2


def _segmentor():
    torch.manual_seed(0)
    cfg = tiny_segmentor_cfg(size=(SIZE, SIZE))
    cfg['backbone']['type'] = 'FusedVisionTransformer'
    model = MODELS.build(ConfigDict(cfg))
    model.init_weights()
    return model.eval()


def _shrunk():
    torch.manual_seed(0)
    return tiny_shrunk_vit().eval()


@pytest.fixture
def switch():
    """Batched casts on every device (off by default)."""
    set_batched_weight_casts(True)
    yield set_batched_weight_casts
    set_batched_weight_casts(False)


def _infer(model, x, enable, mode=torch.no_grad):
    set_batched_weight_casts(enable)
    with mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        return model.encode_decode(x, METAS)


@pytest.mark.parametrize('mode', [torch.no_grad, torch.inference_mode])
def test_outputs_are_autocasts_own(switch, mode):
    model = _segmentor()
    x = torch.randn(2, 3, SIZE, SIZE)
    plain = _infer(model, x, False, mode)
    for _ in range(2):  # building the buffers, then reusing them
        assert torch.equal(_infer(model, x, True, mode), plain)


def test_shrunk_backbone_outputs_are_autocasts_own(switch):
    model = _shrunk()
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for enable in (False, True, True):
        set_batched_weight_casts(enable)
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            outs.append(model(x))
    for out in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(out, outs[0]))


def _ops(model, x, name):
    with torch.profiler.profile() as prof:
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            model.encode_decode(x, METAS)
    return [e for e in prof.events() if e.name == name]


def test_weights_are_cast_in_one_copy_per_module(switch):
    model = _segmentor()
    x = torch.randn(2, 3, SIZE, SIZE)
    set_batched_weight_casts(False)
    casts_off = len(_ops(model, x, 'aten::_to_copy'))
    set_batched_weight_casts(True)
    assert len(_ops(model, x, 'aten::_foreach_copy_')) == 2  # head, backbone
    weights = sum(p.dim() == 2 for n, p in model.named_parameters()
                  if 'weight' in n and 'norm' not in n and 'ln' not in n)
    casts_on = len(_ops(model, x, 'aten::_to_copy'))
    # autocast's own casts of the weights are gone (their copies are made
    # by the foreach op, not by _to_copy)
    assert casts_on <= casts_off - weights


def test_parameters_are_untouched_and_restored_after_errors(switch):
    model = _segmentor()
    before = dict(model.named_parameters())
    x = torch.randn(2, 3, SIZE, SIZE)
    _infer(model, x, True)
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] and after[k].dtype == torch.float32
               for k in before)

    def fail(*args, **kwargs):
        raise RuntimeError('boom')

    model.decode_head.class_embed.forward = fail
    with pytest.raises(RuntimeError, match='boom'):
        _infer(model, x, True)
    assert all(p is before[k] for k, p in model.named_parameters())
    assert isinstance(model.decode_head.class_embed.weight, torch.nn.Parameter)


def test_updated_weights_are_seen_by_the_next_call(switch):
    """Every call copies the current weights: in-place updates, also through
    ``.data`` (as EMA swaps do, without a version bump), count."""
    model = _segmentor()
    x = torch.randn(2, 3, SIZE, SIZE)
    _infer(model, x, True)
    with torch.no_grad():
        model.decode_head.class_embed.weight.mul_(2)
    model.backbone.layers[0].ffn.layers[1].weight.data.copy_(
        torch.randn_like(model.backbone.layers[0].ffn.layers[1].weight))
    assert torch.equal(_infer(model, x, True), _infer(model, x, False))


def test_nothing_is_batched_or_kept_outside_inference(switch):
    model = _segmentor()
    x = torch.randn(2, 3, SIZE, SIZE)
    _infer(model, x, True)
    assert '_batched_weight_casts' in model.backbone.__dict__
    # gradients on (eval): autocast's differentiable casts, buffers dropped
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model.encode_decode(x, METAS)
    out.float().sum().backward()
    assert model.backbone.patch_embed.projection.weight.grad is not None
    assert '_batched_weight_casts' not in model.backbone.__dict__
    # no autocast: the fp32 weights
    with torch.no_grad():
        assert model.encode_decode(x, METAS).dtype == torch.float32
    assert '_batched_weight_casts' not in model.decode_head.__dict__


def test_context_is_a_no_op_without_parameters_or_autocast(switch):
    empty = torch.nn.Identity().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        with batched_weight_casts(empty):
            pass
    linear = torch.nn.Linear(2, 2).eval()
    with torch.no_grad(), batched_weight_casts(linear):
        assert linear.weight.dtype == torch.float32
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        with batched_weight_casts(linear):
            assert linear.weight.dtype == torch.bfloat16
            with batched_weight_casts(linear):  # nested: left as it is
                assert linear.weight.dtype == torch.bfloat16
        assert type(linear.weight) is torch.nn.Parameter


def test_off_by_default_and_none_batches_only_cuda_modules():
    """Off until a GPU measurement shows the batching pays; None switches it on
    for CUDA modules only."""
    code = ('from mmseg_segvit.models.layers import get_batched_weight_casts;'
            'print(get_batched_weight_casts())')
    out = run_python(code).split()
    assert out[-1] == 'False'
    assert get_batched_weight_casts() is False  # every test restores it
    linear = torch.nn.Linear(2, 2).eval()
    for enable in (False, None):
        set_batched_weight_casts(enable)
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            with batched_weight_casts(linear):
                assert linear.weight.dtype == torch.float32  # a CPU module
    set_batched_weight_casts(False)


def test_multihead_attention_left_to_autocast_where_its_fast_path_may_run(
        switch):
    """Outside CUDA autocast torch's eval-mode MultiheadAttention may run its
    native fp32 kernel; low-precision weights would change that, so its weights
    stay as they are there (QU of the Shrunk backbone)."""
    layer = torch.nn.TransformerDecoderLayer(
        16, 2, 32, batch_first=True).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        with batched_weight_casts(layer):
            assert layer.self_attn.in_proj_weight.dtype == torch.float32
            assert layer.self_attn.out_proj.weight.dtype == torch.float32
            assert layer.linear1.weight.dtype == torch.bfloat16


def test_buffers_follow_conversions_of_the_module(switch):
    """``.double()`` (kept in fp64 by autocast) or a memory-format change after
    a call keeps the parameter objects but not their memory: the buffers are
    made anew, as autocast's casts would be."""
    model = _segmentor()
    x = torch.randn(2, 3, SIZE, SIZE)
    _infer(model, x, True)
    model.double()
    batched = _infer(model, x.double(), True)
    assert batched.dtype == torch.float64
    assert torch.equal(batched, _infer(model, x.double(), False))

    switch(True)
    conv = torch.nn.Conv2d(3, 4, 3).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        with batched_weight_casts(conv):
            pass
        conv.to(memory_format=torch.channels_last)
        layout = conv.weight.stride()
        with batched_weight_casts(conv):
            assert conv.weight.dtype == torch.bfloat16
            assert conv.weight.stride() == layout  # as autocast's cast


def test_buffers_are_not_shared_by_two_streams(switch, monkeypatch):
    """On CUDA a call on another stream gets its own buffers: rewriting those
    of a call on another stream could race with its kernels."""
    from mmseg_segvit.models.layers import weight_casts
    stream = ['a']
    monkeypatch.setattr(weight_casts, '_current_stream',
                        lambda device: stream[0])
    linear = torch.nn.Linear(2, 2).eval()

    def cast():
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            with batched_weight_casts(linear):
                return linear.weight

    first = cast()
    assert cast() is first  # same stream: the same buffer
    stream[0] = 'b'
    assert cast() is not first


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_cuda_where_switched_on_with_autocasts_outputs():
    """None batches on CUDA: one foreach copy per module, outputs equal to
    autocast's own casts."""
    set_batched_weight_casts(None)
    model = _segmentor().cuda()
    x = torch.randn(2, 3, SIZE, SIZE, device='cuda')
    outs = []
    for enable in (False, None, None):
        set_batched_weight_casts(enable)
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.bfloat16):
            outs.append(model.encode_decode(x, METAS))
    assert '_batched_weight_casts' in model.backbone.__dict__
    set_batched_weight_casts(False)
    for out in outs[1:]:
        assert torch.equal(out, outs[0])
