"""Builders of tiny models and inputs, the repository paths the tests read, and
checkpoint files rewritten as another numpy writes them: one module, imported
by name (``pytest.ini`` puts ``tests/`` on the path).

Tiny official SegViT checkpoints are in ``official_checkpoints.py``.
"""
import os.path as osp
import re
import subprocess
import sys
import textwrap
import zipfile
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'segvit',
                       'segvit_vit-t8_1xb8-500iter_shapes-128x128.py')
# the fine-tuning example (5 classes); its tests run it at FINETUNE_SIZE
FINETUNE_CONFIG = osp.join(REPO, 'configs', 'segvit', 'finetune',
                           'segvit_vit-b16_1xb4-20k_custom-512x512.py')
FINETUNE_SIZE = 64
# names of the configs on TimmViT (exactly these build it and are tested:
# tests/test_configs/test_foundation_configs.py)
TIMM_CONFIG_NAME = re.compile(r'^segvit_(dinov2|dinov3|beitv2|eva02|timm-vit)')
# the module of numpy's array and scalar rebuilders in a pickle, as
# numpy 2.x and numpy 1.x spell it
NUMPY2 = b'numpy._core.multiarray\n'
NUMPY1 = b'numpy.core.multiarray\n'


def tiny_head(num_classes: int = 5,
              in_channels=32,
              embed_dims: int = 32,
              use_stages: int = 3,
              num_layers: int = 2,
              **kwargs):
    cfg = dict(
        type='ATMHead',
        in_channels=in_channels,
        embed_dims=embed_dims,
        num_heads=4,
        num_layers=num_layers,
        use_stages=use_stages,
        num_classes=num_classes,
        **kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def feature_maps(batch: int = 2,
                 channels=32,
                 grids: Sequence[Tuple[int, int]] = ((4, 6), ) * 3):
    if isinstance(channels, int):
        channels = [channels] * len(grids)
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(channels, grids)]


def data_samples(labels: torch.Tensor):
    """SegDataSamples from (B, H, W) labels."""
    samples = []
    for label in labels:
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label[None].long())
        h, w = label.shape
        sample.set_metainfo(
            dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w)))
        samples.append(sample)
    return samples


def batch_losses(model, imgs: torch.Tensor, labels: torch.Tensor) -> dict:
    """``model.loss`` on (B, 3, H, W) images and their (B, H, W) labels,
    through the model's data preprocessor in training mode."""
    data = model.data_preprocessor(
        dict(inputs=list(imgs), data_samples=data_samples(labels)),
        training=True)
    return model.loss(data['inputs'], data['data_samples'])


def param_group_values(model, optim_wrapper, key: str) -> dict:
    """Parameter name -> the ``key`` (``'lr'``, ``'weight_decay'``) of its
    param group in ``optim_wrapper``, for the parameters of ``model`` the
    optimizer holds."""
    by_id = {
        id(p): group[key]
        for group in optim_wrapper.optimizer.param_groups
        for p in group['params']
    }
    return {
        name: by_id[id(p)]
        for name, p in model.named_parameters() if id(p) in by_id
    }


def meta_head(head_cfg: dict):
    """The decode head a config builds, on the meta device (no memory, no
    initialisation): its settings and its bound loss, at any size."""
    with torch.device('meta'):
        return MODELS.build(dict(head_cfg))


def predict_image(model, img: torch.Tensor):
    """``model.predict`` on one (C, H, W) image through its data preprocessor,
    without gradients; returns the SegDataSample."""
    sample = data_samples(torch.zeros(1, *img.shape[-2:], dtype=torch.long))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[img], data_samples=sample))
        return model.predict(data['inputs'], data['data_samples'])[0]


def save_shapes_checkpoint(model, path: str) -> str:
    """Save ``model`` as mmengine saves a checkpoint, with the classes and
    palette of the demo dataset (SegVitShapesDataset) as its ``dataset_meta``;
    return ``path``."""
    from mmengine.runner import save_checkpoint

    from mmseg_segvit.datasets import SegVitShapesDataset
    meta = SegVitShapesDataset.METAINFO
    save_checkpoint(
        dict(
            state_dict=model.state_dict(),
            meta=dict(
                dataset_meta=dict(
                    classes=meta['classes'], palette=meta['palette']))), path)
    return path


def tiny_segmentor_cfg(num_classes: int = 5,
                       size: Tuple[int, int] = (32, 32),
                       patch_size: int = 8,
                       test_cfg: Optional[dict] = None,
                       dropout: float = 0.1,
                       **head_kwargs) -> dict:
    """Config of a 3-layer, 32-dim ViT with patch ``patch_size`` + ATMHead.

    The structure is that of the shipped configs (EncoderDecoder, mmseg's
    VisionTransformer, features of every layer, ATMHead with 3 stages).
    """
    head = dict(
        type='ATMHead',
        in_channels=32,
        embed_dims=32,
        num_heads=4,
        num_layers=2,
        use_stages=3,
        num_classes=num_classes,
        dropout=dropout,
        loss_decode=dict(type='ATMLoss'))
    head.update(head_kwargs)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[127.5] * 3,
            std=[127.5] * 3,
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=size),
        backbone=dict(
            type='VisionTransformer',
            img_size=size,
            patch_size=patch_size,
            in_channels=3,
            embed_dims=32,
            num_layers=3,
            num_heads=2,
            drop_path_rate=0.1,
            out_indices=[0, 1, 2],
            final_norm=False,
            norm_cfg=dict(type='LN', eps=1e-6),
            with_cls_token=False,
            interpolate_mode='bicubic'),
        decode_head=head,
        train_cfg=dict(),
        test_cfg=test_cfg or dict(mode='whole'))


def tiny_segmentor(*args, **kwargs):
    """Build and initialise :func:`tiny_segmentor_cfg`."""
    model = MODELS.build(ConfigDict(tiny_segmentor_cfg(*args, **kwargs)))
    model.init_weights()
    return model


def tiny_shrunk_segmentor(num_classes: int = 4, **head_kwargs):
    """A Shrunk segmentor on :func:`tiny_segmentor_cfg`: ShrunkViT with QD at
    layer 1 and a one-layer 16-channel QU over the outputs of layers 0 and 2,
    ATMHead with one mask per decoder layer on the QU map (``head_kwargs``
    added to its arguments); initialised, in eval mode."""
    cfg = ConfigDict(
        tiny_segmentor_cfg(
            num_classes=num_classes,
            in_channels=16,
            embed_dims=16,
            use_stages=1,
            use_proj=False,
            mask_mode='per_layer',
            loss_decode=dict(type='ATMLoss'),
            **head_kwargs))
    cfg.backbone.update(
        type='ShrunkViT',
        qd_index=1,
        out_indices=[0, 2],
        qu_cfg=dict(embed_dims=16, num_heads=2, num_layers=1))
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def tiny_timm_segmentor(model_name: str,
                        size: Tuple[int, int],
                        depth: int = 3,
                        out_indices: Sequence[int] = (0, 1, 2),
                        dropout: float = 0.0,
                        **backbone_kwargs):
    """:func:`tiny_segmentor_cfg` (3 classes, head ``dropout``) on timm's
    ``model_name`` (TimmViT): 32 channels, ``depth`` blocks of 2 heads, the
    outputs of blocks ``out_indices``, ``backbone_kwargs`` added to TimmViT's
    arguments; built and initialised."""
    cfg = tiny_segmentor_cfg(num_classes=3, size=size, dropout=dropout)
    cfg['backbone'] = dict(
        type='TimmViT',
        model_name=model_name,
        img_size=size,
        out_indices=out_indices,
        model_kwargs=dict(embed_dim=32, depth=depth, num_heads=2),
        **backbone_kwargs)
    model = MODELS.build(ConfigDict(cfg))
    model.init_weights()
    return model


def timm_demo_config(tmp_path, model_name: str) -> str:
    """Write ``timm_demo.py`` under ``tmp_path``: :data:`DEMO_CONFIG` with
    timm's ``model_name`` (TimmViT at 128x128: 32 channels, 3 blocks of 2
    heads, the outputs of all three) as its backbone; return its path."""
    cfg = tmp_path / 'timm_demo.py'
    cfg.write_text(
        f'_base_ = [{DEMO_CONFIG!r}]\n'
        "model = dict(backbone=dict(_delete_=True, type='TimmViT', "
        f"model_name={model_name!r}, img_size=(128, 128), "
        'out_indices=(0, 1, 2), model_kwargs=dict(embed_dim=32, depth=3, '
        'num_heads=2)), decode_head=dict(in_channels=32))\n')
    return str(cfg)


def run_python(code: str) -> str:
    """The output of ``python -c code`` (``code`` dedented) in a fresh
    interpreter, asserted to exit with 0 (the message: its stderr)."""
    proc = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_tool(script: str, *args: str) -> subprocess.CompletedProcess:
    """``python tools/<script> args`` in the repository, its output captured as
    text (the exit status is not checked)."""
    return subprocess.run(
        [sys.executable,
         osp.join(REPO, 'tools', script), *args],
        capture_output=True,
        text=True,
        cwd=REPO)


def dynamic_export_checks(proc: subprocess.CompletedProcess) -> List[str]:
    """The lines of a ``tools/export_onnx.py --dynamic`` run that check the
    graph at the four sizes, asserted to have passed."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if 'argmax' in line]
    assert len(lines) == 4 and all(line.endswith('ok') for line in lines)
    return lines


def tiny_vit_cfg(**kwargs) -> dict:
    """A plain ViT backbone's arguments (no ``type``): 64x64 input in 8x8
    patches, 32 channels, 4 layers of 2 heads, the outputs of layers 1 and 3,
    no class token, no final norm, LN(eps=1e-6); ``kwargs`` override or add."""
    cfg = dict(
        img_size=(64, 64),
        patch_size=8,
        embed_dims=32,
        num_layers=4,
        num_heads=2,
        out_indices=[1, 3],
        with_cls_token=False,
        final_norm=False,
        norm_cfg=dict(type='LN', eps=1e-6))
    cfg.update(kwargs)
    return cfg


def tiny_shrunk_vit(**kwargs):
    """ShrunkViT on :func:`tiny_vit_cfg` with QD at layer 2 and a 16-channel QU
    of 2 heads (``kwargs`` override or add), initialised."""
    cfg = tiny_vit_cfg(qd_index=2, qu_cfg=dict(embed_dims=16, num_heads=2))
    cfg.update(kwargs)
    model = MODELS.build(dict(type='ShrunkViT', **cfg))
    model.init_weights()
    return model


def make_finetune_model_tiny(model):
    """Make the model of :data:`FINETUNE_CONFIG` (its ``model`` config,
    changed in place) a 3-layer, 32-dim ViT + ATMHead for
    :data:`FINETUNE_SIZE` square images (one sliding window)."""
    model.data_preprocessor.size = (FINETUNE_SIZE, FINETUNE_SIZE)
    model.backbone.update(
        img_size=(FINETUNE_SIZE, FINETUNE_SIZE),
        embed_dims=32,
        num_layers=3,
        num_heads=2,
        out_indices=[0, 1, 2],
        drop_path_rate=0.0)
    model.decode_head.update(
        in_channels=32, embed_dims=32, num_heads=4, num_layers=2)
    model.test_cfg.update(
        crop_size=(FINETUNE_SIZE, FINETUNE_SIZE), stride=(48, 48))


def rewrite_globals(src, dst, old: bytes, new: bytes) -> bytes:
    """Copy a ``torch.save`` file, renaming a pickled global's module.

    ``torch.save`` writes pickle protocol 2, where a global is the text
    ``c<module>\\n<name>\\n``; renaming it changes nothing else. Returns the
    new pickle.
    """
    with zipfile.ZipFile(src) as zin, \
            zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith('data.pkl'):
                assert old in data, 'nothing to rewrite'
                data = data.replace(old, new)
                pickled = data
            zout.writestr(info, data)
    return pickled
