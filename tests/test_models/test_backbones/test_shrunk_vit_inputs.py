"""The Shrunk segmentor (ShrunkViT + ATMHead) on odd image sizes."""
import copy
import functools

import pytest
import torch
from fixtures import data_samples, tiny_segmentor_cfg, tiny_shrunk_segmentor
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import ConfigDict
from mmseg.registry import MODELS


@functools.lru_cache(maxsize=None)
def _shrunk_segmentor(num_classes=4):
    return tiny_shrunk_segmentor(num_classes)


@settings(max_examples=8, deadline=None)
@given(size=st.tuples(st.integers(5, 70), st.integers(5, 70)))
def test_shrunk_segmentor_predictions_cover_the_image(size):
    model = _shrunk_segmentor()
    img = torch.randint(0, 255, (3, *size)).float()
    sample = data_samples(torch.zeros(1, *size, dtype=torch.long))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[img], data_samples=sample))
        out = model.predict(data['inputs'], data['data_samples'])[0]
    assert out.seg_logits.data.shape == (4, *size)
    assert out.pred_sem_seg.data.shape == (1, *size)
    assert torch.isfinite(out.seg_logits.data).all()


def test_shrunk_segmentor_trains_on_odd_sizes():
    model = _shrunk_segmentor()
    model.train()
    imgs = [
        torch.randint(0, 255, (3, 27, 32)).float(),
        torch.randint(0, 255, (3, 32, 19)).float()
    ]
    labels = [torch.randint(0, 4, (27, 32)), torch.full((32, 19), 255)]
    samples = [data_samples(lab[None])[0] for lab in labels]
    data = model.data_preprocessor(
        dict(inputs=imgs, data_samples=samples), True)
    loss, _ = model.parse_losses(
        model.loss(data['inputs'], data['data_samples']))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()
    model.eval()


def test_qd_index_outside_the_layers_fails_at_build():
    cfg = ConfigDict(tiny_segmentor_cfg())
    cfg.backbone.update(type='ShrunkViT', qd_index=3, out_indices=[0, 2])
    with pytest.raises(ValueError, match=r'qd_index \(3\).*3 layers'):
        MODELS.build(cfg)


def test_shrunk_segmentor_under_flop_counter_and_on_meta():
    """QU's batched queries without gradients and the meta device (no autocast
    there) work as in the plain segmentor."""
    from torch.utils.flop_counter import FlopCounterMode
    model = _shrunk_segmentor()
    metas = [dict(img_shape=(40, 56), pad_shape=(40, 56))]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.encode_decode(torch.randn(1, 3, 40, 56), metas)
    assert sum(counter.get_flop_counts()['ShrunkViT.qu'].values()) > 0
    meta_model = copy.deepcopy(model).to('meta')
    with torch.no_grad():
        out = meta_model.encode_decode(
            torch.empty(1, 3, 40, 56, device='meta'), metas)
    assert out.is_meta and out.shape == (1, 4, 40, 56)


def test_qu_heads_that_do_not_divide_its_default_width_are_named():
    """The QU width defaults to half the ViT's and its heads to the ViT's:

    36 dims and 4 heads give QU 18 dims and 4 heads.
    """
    cfg = ConfigDict(tiny_segmentor_cfg())
    cfg.backbone.update(
        type='ShrunkViT',
        qd_index=1,
        out_indices=[0, 2],
        embed_dims=36,
        num_heads=4)
    with pytest.raises(
            ValueError,
            match=r'embed_dims=18 \(qu_cfg\.embed_'
            r'dims; default half the ViT width 36\) and '
            r'num_heads=4 .*backbone\.qu_cfg='):
        MODELS.build(cfg)
