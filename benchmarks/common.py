"""What the benchmark scripts share: the models they measure, how they build
them, the batch they feed them and how they time them.

- :data:`SPECS`: every model a table can hold (a config with overrides,
  or a preset of the official SegViT code), built by :func:`build_model`
  with random weights through :func:`mmseg_segvit.utils.configs.build_model`
  (nothing is downloaded); ``tiny`` shrinks it for dry runs
  (:func:`tiny_model_cfg`).
- :func:`fake_batch`: random images with blocky labels of a few classes.
- :func:`train_step`: forward, loss, backward and the optimizer's step.
- :func:`measure`, :func:`time_block`, :func:`calls_per_block`: seconds
  and peak memory of calls, the device synchronised around them.
- :func:`autocast`, :func:`device_name`.
"""
import contextlib
import glob
import importlib.util
import math
import os
import os.path as osp
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from benchmarks.cpu_memory import peak_mib
from mmseg_segvit.models.decode_heads import ATMHead
from mmseg_segvit.models.layers import (get_batched_weight_casts,
                                        set_batched_weight_casts)
from mmseg_segvit.utils.configs import build_model as build_segmentor
from mmseg_segvit.utils.configs import load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEGVIT_B = 'configs/segvit/segvit_vit-b16_8xb2-160k_ade20k-512x512.py'
SEGVIT_L = 'configs/segvit/segvit_vit-l16_8xb2-160k_ade20k-640x640.py'
SHRUNK_L = 'configs/segvit/segvit_vit-l16-shrunk*ade20k-640x640.py'
LEAN_POINTS = 12544  # Mask2Former's 112 x 112
OFFICIAL = '<official code>'  # Spec.config of the official presets
# --tiny: every model at this depth and width (a dry run of the script)
TINY_LAYERS, TINY_DIMS, TINY_HEADS = 4, 64, 2
TINY_OFFICIAL = {
    'vit-b_512': 'tiny',
    'vit-l_640': 'tiny',
    'vit-l_640_shrunk': 'tiny_shrunk'
}


class CropMasksATMHead(ATMHead):
    """ATMHead with the official code's training memory layout.

    The official head resizes the masks of every output and every class to the
    crop in its forward pass, and the loss then picks the present classes. This
    package's loss gives the same values from the masks at their grid, resizing
    only the present classes; this subclass restores the official layout so
    that the benchmark can measure what that costs. Built by
    :func:`build_model` directly (not registered).
    """

    def __init__(self, crop_size: Tuple[int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.crop_size = tuple(crop_size)

    def forward(self, inputs):
        cls_logits, mask_logits = super().forward(inputs)
        if self.training:
            outputs, batch = mask_logits.shape[:2]
            mask_logits = torch.nn.functional.interpolate(
                mask_logits.flatten(0, 1),
                size=self.crop_size,
                mode='bilinear',
                align_corners=False).unflatten(0, (outputs, batch))
        return cls_logits, mask_logits


@dataclass
class Spec:
    """A model to measure: a config, its crop and config overrides; or a
    preset of the official code (``official``); ``weight_casts`` sets
    :func:`set_batched_weight_casts` around every call of the row."""
    label: str
    config: str
    crop: int
    overrides: dict = field(default_factory=dict)
    head_type: Optional[type] = None  # an unregistered ATMHead subclass
    head_kwargs: dict = field(default_factory=dict)
    official: Optional[str] = None  # a preset of the official harness
    weight_casts: Optional[bool] = None


SPECS: Dict[str, Spec] = {
    'segvit-b':
    Spec('SegViT ViT-B/16', SEGVIT_B, 512),
    'segvit-b-fast':
    Spec('SegViT ViT-B/16, fast order', SEGVIT_B, 512,
         {'model.decode_head.fast_inference': True}),
    'segvit-b-lean':
    Spec(
        'SegViT ViT-B/16, lean loss + fast order', SEGVIT_B, 512, {
            'model.decode_head.fast_inference': True,
            'model.decode_head.loss_decode.num_points': LEAN_POINTS
        }),
    'segvit-b-lean-loss':
    Spec('SegViT ViT-B/16, lean loss only', SEGVIT_B, 512,
         {'model.decode_head.loss_decode.num_points': LEAN_POINTS}),
    'segvit-b-crop-masks':
    Spec(
        'SegViT ViT-B/16, every mask resized to the crop (official layout)',
        SEGVIT_B,
        512,
        head_type=CropMasksATMHead,
        head_kwargs=dict(crop_size=(512, 512))),
    'segvit-b-mmcv-attn':
    Spec('SegViT ViT-B/16, unfused attention', SEGVIT_B, 512,
         {'model.backbone.fused_attn': False}),
    'segvit-b-casts':
    Spec(
        'SegViT ViT-B/16, batched weight casts',
        SEGVIT_B,
        512,
        weight_casts=True),
    'segvit-l':
    Spec('SegViT ViT-L/16', SEGVIT_L, 640),
    'segvit-l-casts':
    Spec(
        'SegViT ViT-L/16, batched weight casts',
        SEGVIT_L,
        640,
        weight_casts=True),
    'segvit-shrunk-l':
    Spec('SegViT-Shrunk ViT-L/16', SHRUNK_L, 640),
    'segvit-shrunk-l-casts':
    Spec(
        'SegViT-Shrunk ViT-L/16, batched weight casts',
        SHRUNK_L,
        640,
        weight_casts=True),
    'off-b':
    Spec(
        'SegViT ViT-B/16 (official code)', OFFICIAL, 512,
        official='vit-b_512'),
    'off-l':
    Spec(
        'SegViT ViT-L/16 (official code)', OFFICIAL, 640,
        official='vit-l_640'),
    'off-shrunk-l':
    Spec(
        'SegViT-Shrunk ViT-L/16 (official code)',
        OFFICIAL,
        640,
        official='vit-l_640_shrunk'),
    'segmenter-b':
    Spec('Segmenter ViT-B/16 mask (mmseg)',
         'mmseg::segmenter/segmenter_vit-b_mask_8xb1-160k_ade20k-512x512.py',
         512),
    'upernet-b':
    Spec('UPerNet ViT-B/16 + MLN (mmseg)',
         'mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
         512),
    'setr-l':
    Spec('SETR-Naive ViT-L/16 (mmseg)',
         'mmseg::setr/setr_vit-l_naive_8xb2-160k_ade20k-512x512.py', 512),
}


# --- building ---
def _no_sync_bn(cfg):
    """SyncBN -> BN everywhere (one process, no process group)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
        for value in cfg.values():
            _no_sync_bn(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _no_sync_bn(value)


def official_harness():
    """The official code's harness module (``official.py`` of the peers
    folder: ``SEGVIT_PEERS``, else ``../shared/gpu/peers`` beside the
    checkout, else ``.whl/peers``), or None where it or the mirror of the
    official repository (``SEGVIT_OFFICIAL``) is missing."""
    if not os.environ.get('SEGVIT_OFFICIAL'):
        return None
    candidates = [
        os.environ.get('SEGVIT_PEERS', ''),
        osp.join(osp.dirname(REPO), 'shared', 'gpu', 'peers'),
        osp.join(REPO, '.whl', 'peers')
    ]
    for folder in candidates:
        if folder and osp.exists(osp.join(folder, 'official.py')):
            if 'official' not in sys.modules:
                path = osp.join(folder, 'official.py')
                module_spec = importlib.util.spec_from_file_location(
                    'official', path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules['official'] = module
                module_spec.loader.exec_module(module)
            return sys.modules['official']
    return None


class OfficialSegmentor(nn.Module):
    """A preset of the official code (its backbone and head, built and
    initialised by the harness) behind the calls this benchmark makes of an
    mmseg segmentor: ``extract_feat``, ``encode_decode`` (mmseg 0.24's whole
    inference: head, resize to the input), ``loss`` and ``predict_head`` (the
    head's part of ``encode_decode``)."""

    def __init__(self, preset: str) -> None:
        super().__init__()
        harness = official_harness()
        net = harness.build_official_segvit(preset)
        self.backbone, self.decode_head = net.backbone, net.decode_head
        self._forward = harness.official_segmentor_forward
        self.test_cfg = None

    def extract_feat(self, x: torch.Tensor):
        return self.backbone(x)

    def predict_head(self, feats, metas: list) -> torch.Tensor:
        out = self.decode_head(feats)
        return nn.functional.interpolate(
            out,
            size=metas[0]['img_shape'],
            mode='bilinear',
            align_corners=self.decode_head.align_corners)

    def encode_decode(self, x: torch.Tensor, metas: list) -> torch.Tensor:
        return self._forward(self.backbone, self.decode_head, x)

    def loss(self, x: torch.Tensor, samples: list) -> dict:
        labels = torch.stack([s.gt_sem_seg.data for s in samples])
        return self._forward(self.backbone, self.decode_head, x, labels)


def resolve_config(spec: Spec) -> Optional[str]:
    """Path of the spec's config, or None if it does not exist here."""
    if spec.official:
        harness = official_harness()
        return None if harness is None else harness.__file__
    if spec.config.startswith('mmseg::'):
        import mmseg
        path = osp.join(
            osp.dirname(mmseg.__file__), '.mim', 'configs',
            spec.config[len('mmseg::'):])
        return path if osp.exists(path) else None
    matches = sorted(glob.glob(osp.join(REPO, spec.config)))
    return matches[0] if matches else None


def _tiny_indices(indices: List[int], layers: int) -> List[int]:
    """Block indices of a ``layers``-deep backbone mapped onto ``TINY_LAYERS``
    blocks: about the same fraction of the depth, still distinct and
    increasing."""
    mapped = [i * (TINY_LAYERS - 1) // max(layers - 1, 1) for i in indices]
    for j in range(len(mapped) - 2, -1, -1):
        mapped[j] = min(mapped[j], mapped[j + 1] - 1)
    if mapped and mapped[0] < 0:
        raise ValueError(f'{len(indices)} outputs do not fit {TINY_LAYERS} '
                         'blocks')
    return mapped


def tiny_model_cfg(model_cfg) -> None:
    """Shrink a ViT segmentor's config in place to ``TINY_LAYERS`` blocks of
    ``TINY_DIMS`` channels (its head and neck follow: every width that equals
    the backbone's, or half of it, is scaled), for dry runs that must finish in
    seconds.

    Output indices keep their place in the depth; a Shrunk backbone's QD layer
    follows its first output.
    """
    backbone = model_cfg.backbone
    dims, layers = backbone.embed_dims, backbone.num_layers
    widths = {dims: TINY_DIMS, dims // 2: TINY_DIMS // 2}

    def scale(cfg):
        if isinstance(cfg, dict):
            for key, value in cfg.items():
                if key == 'num_heads':
                    cfg[key] = TINY_HEADS
                elif key in ('in_channels', 'channels', 'embed_dims',
                             'out_channels'):
                    if isinstance(value, int):
                        cfg[key] = widths.get(value, value)
                    elif isinstance(value, (list, tuple)):
                        cfg[key] = [widths.get(v, v) for v in value]
                else:
                    scale(value)
        elif isinstance(cfg, (list, tuple)):
            for value in cfg:
                scale(value)

    scale(model_cfg)
    backbone.num_layers = TINY_LAYERS
    if 'out_indices' in backbone:
        backbone.out_indices = _tiny_indices(
            list(backbone.out_indices), layers)
    if 'qd_index' in backbone:
        backbone.qd_index = backbone.out_indices[0] + 1


def build_model(spec: Spec, crop: int, tiny: bool = False) -> nn.Module:
    """The spec's model on the CPU with random weights, nothing downloaded.

    Built by :func:`mmseg_segvit.utils.configs.build_model` from the spec's
    config with its overrides, no data preprocessor (the benchmarks feed
    normalised images), the backbone's ``img_size`` set to ``crop`` and SyncBN
    replaced by BN (one process). ``tiny``: at reduced depth and width
    (:func:`tiny_model_cfg`; the official code's tiny presets, whose crop is
    64).
    """
    if spec.official:
        return OfficialSegmentor(
            TINY_OFFICIAL[spec.official] if tiny else spec.official)
    cfg = load_config(resolve_config(spec), spec.overrides)
    model_cfg = cfg.model
    model_cfg.data_preprocessor = None  # inputs are fed normalised
    if 'img_size' in model_cfg.backbone:
        model_cfg.backbone.img_size = (crop, crop)
    if tiny:
        tiny_model_cfg(model_cfg)
    _no_sync_bn(model_cfg)
    model = build_segmentor(cfg, device='cpu')
    if spec.head_type is not None:
        head_cfg = dict(model_cfg.decode_head)
        head_cfg.pop('type')
        model.decode_head = spec.head_type(**head_cfg, **spec.head_kwargs)
        model.decode_head.init_weights()
    return model


def fake_batch(batch: int, crop: int, num_classes: int,
               device: torch.device) -> Tuple[torch.Tensor, list, list]:
    """Random images, their metas and blocky labels with ~12 classes each (real
    scenes show a handful of classes, not all of them)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, crop, crop, generator=gen)
    metas, samples = [], []
    block = max(crop // 8, 1)
    for _ in range(batch):
        pool = torch.randperm(num_classes, generator=gen)[:12]
        cells = pool[torch.randint(0, len(pool), (8, 8), generator=gen)]
        label = cells.repeat_interleave(block, 0).repeat_interleave(block, 1)
        label = label[:crop, :crop]
        meta = dict(
            img_shape=(crop, crop),
            pad_shape=(crop, crop),
            ori_shape=(crop, crop))
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(data=label[None].to(device))
        metas.append(meta)
        samples.append(sample)
    return images.to(device), metas, samples


# --- measuring ---
def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device,
            memory: bool) -> Tuple[float, Optional[float]]:
    """Seconds and (optionally) peak extra memory in MiB of one call."""
    if memory and device.type == 'cpu':
        return peak_mib(fn)
    peak = None
    synchronize(device)
    if memory:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    seconds = time.perf_counter() - start
    if memory:
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return seconds, peak


def calls_per_block(seconds_per_call: float, min_calls: int,
                    min_seconds: float) -> int:
    """How many calls a timed block holds: ``min_calls``, or fewer where they
    would take longer than ``min_seconds`` (at least one call)."""
    if seconds_per_call <= 0:
        return max(min_calls, 1)
    return max(1, min(min_calls, math.ceil(min_seconds / seconds_per_call)))


def time_block(fn: Callable[[], object], device: torch.device, min_calls: int,
               min_seconds: float) -> float:
    """Mean seconds per call of ``fn`` over one block of calls (at least
    ``min_calls`` calls or at least ``min_seconds``), the device synchronised
    before and after the block only, so that the host queues the calls as a
    training or test loop does.

    One call first sizes the block (and is not counted).
    """
    first, _ = measure(fn, device, False)
    calls = calls_per_block(first, min_calls, min_seconds)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def autocast(device: torch.device, dtype: str):
    if dtype == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(
        device_type=device.type,
        dtype=dict(bf16=torch.bfloat16, fp16=torch.float16)[dtype])


@contextlib.contextmanager
def spec_setting(spec: Spec):
    """The spec's own global settings (batched weight casts) around its calls,
    the previous setting restored after."""
    if spec.weight_casts is None:
        yield
        return
    before = get_batched_weight_casts()
    set_batched_weight_casts(spec.weight_casts)
    try:
        yield
    finally:
        set_batched_weight_casts(before)


def train_step(
        model: nn.Module,
        x: torch.Tensor,
        samples: list,
        device: torch.device,
        dtype: str,
        optimizer: Optional[torch.optim.Optimizer] = None
) -> Callable[[], None]:
    """One training step: forward and loss under autocast, backward, the
    optimizer's step (when given), gradients freed."""

    def step():
        with autocast(device, dtype):
            losses = model.loss(x, samples)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)

    return step


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW as the paper recipes (a tiny lr: the weights are random and only
    the cost of the step matters); one fused/foreach kernel set on CUDA as
    torch picks by default."""
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=1e-8,
        weight_decay=0.01)


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{cpu}, {torch.get_num_threads()} threads'
