"""The Shrunk segmentor (ShrunkViT + ATMHead) on odd image sizes."""
import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from fixtures import data_samples, tiny_segmentor_cfg


@functools.lru_cache(maxsize=None)
def _shrunk_segmentor(num_classes=4):
    cfg = ConfigDict(
        tiny_segmentor_cfg(
            num_classes=num_classes,
            in_channels=16,
            embed_dims=16,
            use_stages=1,
            use_proj=False,
            mask_mode='per_layer',
            loss_decode=dict(
                type='ATMLoss', num_classes=num_classes, dec_layers=2)))
    cfg.backbone.update(
        type='ShrunkViT',
        qd_index=1,
        out_indices=[0, 2],
        qu_cfg=dict(embed_dims=16, num_heads=2, num_layers=1))
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


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
