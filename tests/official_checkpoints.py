"""Tiny official SegViT checkpoints and the configs that take them.

The state dicts have the official key layout (mmseg 0.x ViT or ``vit_shrink``
keys + the heads of :mod:`official_segvit_reference`), with random weights; the
configs build this package's models of the same size. One module, imported by
name (``pytest.ini`` puts ``tests/`` on the path).
"""
import torch
from fixtures import tiny_vit_cfg
from mmseg.registry import MODELS
from official_segvit_reference import (OfficialATMHead, OfficialTPNATMHead,
                                       OfficialViTShrink)

NUM_CLASSES, LAYERS, EMBED, DIM, HEADS = 5, 2, 32, 16, 4


def vit16_cfg(**kwargs) -> dict:
    """:func:`fixtures.tiny_vit_cfg` with the official ViT/16 settings: 16x16
    patches with a bias, ``HEADS`` heads, bicubic position table resizing;
    ``kwargs`` override or add."""
    cfg = tiny_vit_cfg(
        patch_size=16,
        patch_bias=True,
        num_heads=HEADS,
        interpolate_mode='bicubic')
    cfg.update(kwargs)
    return cfg


# the Shrunk ViT of official_shrunk / shrunk_cfg (mmseg ViT settings)
VIT = vit16_cfg(embed_dims=EMBED)


def _segmentor_cfg(backbone: dict, num_classes: int, **head) -> dict:
    """EncoderDecoder of ``backbone`` and an ATMHead of ``DIM`` channels,
    ``LAYERS`` layers of ``HEADS`` heads (``head`` added), whole inference."""
    return dict(
        type='EncoderDecoder',
        backbone=backbone,
        decode_head=dict(
            type='ATMHead',
            embed_dims=DIM,
            num_classes=num_classes,
            num_layers=LAYERS,
            num_heads=HEADS,
            **head),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def tiny_cfg(num_classes=NUM_CLASSES, img=64, embed=EMBED, depth=4):
    """Config of the plain model :func:`official_checkpoint` converts to:

    a ``depth``-layer ViT/16 (patch bias, no final norm) + 3-stage ATMHead.
    """
    return _segmentor_cfg(
        dict(
            type='VisionTransformer',
            **vit16_cfg(
                img_size=(img, img),
                embed_dims=embed,
                num_layers=depth,
                out_indices=[depth - 3, depth - 2, depth - 1])),
        num_classes,
        in_channels=embed,
        use_stages=3)


def randomize(module):
    """Random values everywhere (norms included), fixed by the seed."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if 'norm' in name else 0.2))
            if 'norm' in name and name.endswith('weight'):
                p.add_(1.0)
    return module


def official_checkpoint(num_classes=NUM_CLASSES, img=64, embed=EMBED, depth=4):
    """An official-layout state dict: mmseg ViT keys + reference head."""
    backbone = randomize(
        MODELS.build(tiny_cfg(num_classes, img, embed, depth)).backbone)
    head = randomize(
        OfficialATMHead(img, embed, DIM, num_classes, LAYERS, HEADS, 3))
    sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    sd.update({f'decode_head.{k}': v for k, v in head.state_dict().items()})
    return sd, backbone, head


def shrunk_cfg(num_classes=NUM_CLASSES):
    """Config of the Shrunk model :func:`official_shrunk` converts to:

    ``ShrunkViT`` with query up-sampling + a 1-stage, per-layer-mask ATMHead
    without projections.
    """
    return _segmentor_cfg(
        dict(
            type='ShrunkViT',
            qd_index=2,
            qu_cfg=dict(embed_dims=DIM, num_heads=HEADS, num_layers=LAYERS),
            **VIT),
        num_classes,
        in_channels=DIM,
        use_stages=1,
        use_proj=False,
        mask_mode='per_layer')


def official_shrunk(num_classes=NUM_CLASSES):
    """An official Shrunk state dict: reference ``vit_shrink`` keys + reference
    ``TPNATMHead``; returns it, the backbone and the head."""
    backbone = randomize(OfficialViTShrink(shrink_idx=2, **VIT))
    head = randomize(
        OfficialTPNATMHead(64, EMBED, DIM, num_classes, LAYERS, HEADS, 2))
    sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    sd.update({f'decode_head.{k}': v for k, v in head.state_dict().items()})
    return sd, backbone, head


def load_numbered(sd, cfg):
    """Give every tensor of the official state dict ``sd`` a distinct constant
    (its index), convert it and load it strictly into the model ``cfg`` builds,
    so that a swapped tensor cannot go unnoticed.

    Returns:
        The loaded model.
    """
    from mmseg_segvit.checkpoints import convert_official_state_dict
    with torch.no_grad():
        for i, v in enumerate(sd.values()):
            v.fill_(float(i))
    model = MODELS.build(cfg)
    converted, _ = convert_official_state_dict(sd, model)
    model.load_state_dict(converted, strict=True)
    return model


def vit_shapes(dims, depth, classes, tokens):
    """Just enough of an official state dict to describe it (no memory)."""
    sd = {
        'backbone.patch_embed.projection.weight':
        torch.empty(dims, 3, 16, 16, device='meta'),
        'backbone.pos_embed':
        torch.empty(1, tokens, dims, device='meta'),
        'decode_head.q.weight':
        torch.empty(classes, dims // 2, device='meta'),
    }
    for i in range(depth):
        sd[f'backbone.layers.{i}.ln1.weight'] = torch.empty(
            dims, device='meta')
    return sd


def assert_computes_like(model, img, want, num_outputs):
    """Class logits, masks and prediction of ``model`` on (2, 3, 64, 64) images
    equal the reference ones (``want``: classes, masks, pred)."""
    with torch.no_grad():
        cls, masks = model.decode_head(model.extract_feat(img))
        metas = [dict(img_shape=(64, 64), pad_shape=(64, 64))] * 2
        pred = model.encode_decode(img, metas)
    assert cls.shape == want['classes'].shape == (num_outputs, 2, 5, 6)
    assert masks.shape == want['masks'].shape == (num_outputs, 2, 5, 4, 4)
    torch.testing.assert_close(cls, want['classes'], rtol=0, atol=1e-5)
    torch.testing.assert_close(masks, want['masks'], rtol=0, atol=1e-5)
    torch.testing.assert_close(pred, want['pred'], rtol=0, atol=1e-6)
    # the check is not vacuous: outputs vary across classes and pixels
    assert want['pred'].std() > 1e-3 and masks.std() > 1e-2
