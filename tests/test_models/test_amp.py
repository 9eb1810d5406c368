"""Mixed precision: bf16 autocast on CPU, fp16 AMP on CUDA."""
import pytest
import torch
from fixtures import data_samples, tiny_segmentor
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.runner.amp import autocast

CUDA = torch.cuda.is_available()


def _batch(num_classes=5, size=32, batch=2):
    imgs = torch.randint(0, 255, (batch, 3, size, size)).float()
    labels = torch.randint(0, num_classes, (batch, size, size))
    labels[0, :4] = 255
    return dict(inputs=list(imgs), data_samples=data_samples(labels))


def _amp_step(model, wrapper, data):
    """train_step split open so that gradients can be inspected."""
    with wrapper.optim_context(model):
        data = model.data_preprocessor(data, True)
        losses = model._run_forward(data, mode='loss')
    loss, _ = model.parse_losses(losses)
    wrapper.backward(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    wrapper.step()
    wrapper.zero_grad()
    return loss, losses, grads


def _record_dtypes(model):
    seen = {}

    def hook(name):

        def record(module, args, out):
            seen.setdefault(name, out.dtype)

        return record

    model.backbone.layers[0].ffn.layers[0][0].register_forward_hook(
        hook('backbone_linear'))
    model.decode_head.class_embed.register_forward_hook(hook('head_linear'))
    return seen


@pytest.mark.filterwarnings("ignore:.*GradScaler:FutureWarning")
def test_bf16_amp_optim_wrapper_step_on_cpu(monkeypatch):
    """mmengine's AmpOptimWrapper refuses to be built without an accelerator;
    its autocast supports bf16 on CPU. With the check lifted the wrapper's CPU
    path runs (the CUDA GradScaler disables itself).

    The test plays a CPU-only machine on every machine: with CUDA present,
    mmengine would autocast for 'cuda' and the scaler would expect CUDA
    tensors, neither of which is the path under test.
    """
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    # mmengine decides its autocast device once, at import
    monkeypatch.setattr('mmengine.device.utils.DEVICE', 'cpu')
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    model = tiny_segmentor(num_classes=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.warns(UserWarning, match='CUDA is not available'):
        wrapper = AmpOptimWrapper(optimizer=optimizer, dtype='bfloat16')
    seen = _record_dtypes(model)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        loss, losses, grads = _amp_step(model, wrapper, _batch())
        assert torch.isfinite(loss)
        assert all(v.dtype == torch.float32 for v in losses.values())
        assert grads and all(torch.isfinite(g).all() for g in grads)
    assert seen == dict(
        backbone_linear=torch.bfloat16, head_linear=torch.bfloat16)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_fp32_and_bf16_autocast_outputs_agree():
    model = tiny_segmentor(num_classes=5).eval()
    img = torch.randint(0, 255, (1, 3, 40, 56)).float()
    with torch.no_grad():
        ref_cls, ref_masks = model(img, mode='tensor')
        ref = model.inference(
            img,
            [dict(img_shape=(40, 56), pad_shape=(40, 56), ori_shape=(40, 56))])
        with autocast(device_type='cpu', dtype=torch.bfloat16):
            cls, masks = model(img, mode='tensor')
            out = model.inference(img, [
                dict(
                    img_shape=(40, 56), pad_shape=(40, 56), ori_shape=(40, 56))
            ])
    assert cls.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: relative error ~1e-2 per operation
    scale = ref_masks.abs().max()
    assert (masks.float() - ref_masks).abs().max() < 0.05 * scale
    assert (cls.float() - ref_cls).abs().max() < 0.05 * ref_cls.abs().max()
    # scores live in [0, 1]
    assert (out.float() - ref).abs().max() < 0.02


def test_fp32_training_step_reference_is_finite():
    model = tiny_segmentor(num_classes=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    wrapper = OptimWrapper(optimizer=optimizer)
    loss, _, grads = _amp_step(model, wrapper, _batch())
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.skipif(not CUDA, reason='fp16 AMP needs a CUDA device')
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_optim_wrapper_on_cuda(dtype):
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip('no bf16 on this GPU')
    model = tiny_segmentor(num_classes=150, size=(64, 64)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    wrapper = AmpOptimWrapper(
        optimizer=optimizer, dtype=dtype, clip_grad=dict(max_norm=35.0))
    seen = _record_dtypes(model)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(5):
        scale = wrapper.loss_scaler.get_scale()
        loss, losses, grads = _amp_step(
            model, wrapper, _batch(num_classes=150, size=64, batch=4))
        assert torch.isfinite(loss)
        assert all(v.dtype == torch.float32 for v in losses.values())
        # gradients are finite, or the scaler skipped the step and lowered
        # its scale (fp16 can overflow at the initial scale of 2**16)
        assert all(torch.isfinite(g).all() for g in grads) or \
            wrapper.loss_scaler.get_scale() < scale
    assert seen['backbone_linear'] == getattr(torch, dtype)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
