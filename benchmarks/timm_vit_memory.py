"""Estimated training memory per GPU (batch 2) of the configs on TimmViT.

An estimate for machines without a GPU, printed as a Markdown table:

* weights, gradients and optimizer state: the config's model built on
  the meta device (no weights), 4 bytes per parameter (fp32 weights) plus
  12 per trainable one (its gradient and AdamW's two moments); the
  config's optimizer leaves frozen parameters out
  (``ViTLayerDecayOptimWrapperConstructor``);
* activations: the peak resident memory of one fp32 training step
  (forward, ATMLoss, backward; batch 2, labels with ``CLASSES_PER_IMAGE``
  classes each, as a busy ADE20K image: ATMLoss's mask terms grow with
  the classes present) of the config's model cut to ``--depths`` blocks
  (full width, random weights) at ``--measure-crop`` (the model built for
  that crop), measured on the CPU in a child process with a fixed glibc
  mmap threshold (``cpu_memory.py``), extrapolated linearly to the full
  depth and scaled to the config's crop by the ratio of pixels (tokens,
  masks and labels all grow with it; the attention kernels are linear in
  the tokens).

Counting every gradient and every activation at once makes the total an
upper estimate of the peak (the backward pass frees activations as it
allocates gradients). torch's CPU attention is a flash kernel whose memory is
  linear in the tokens, like the GPU kernels, so the activations a GPU
  keeps are about the same tensors; a CUDA context (~0.5 GiB), allocator
  caching, cuBLAS workspaces and the temporaries of the optimizer step
  (foreach AdamW: up to the size of the trainable weights) are not
  included.

Columns: without and with activation checkpointing (``with_cp=True``).

    python -m benchmarks.timm_vit_memory        # the five ADE20K configs
    python -m benchmarks.timm_vit_memory \\
        --configs segvit_eva02-l14_8xb2-80k_ade20k-512x512
"""
import argparse
import os.path as osp
from typing import Dict, List

import torch

import mmseg_segvit  # noqa: F401  (compat before mmseg.models)
from benchmarks.cpu_memory import (CHILD_FLAG, check_child, peak_mib,
                                   run_child, write_child_result)
from mmseg_segvit.utils.configs import build_model, load_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIGS = [
    'segvit_dinov2-l14_8xb2-80k_ade20k-512x512',
    'segvit_dinov3-l16_8xb2-80k_ade20k-512x512',
    'segvit_dinov3-l16-frozen_8xb2-40k_ade20k-512x512',
    'segvit_beitv2-l16_8xb2-160k_ade20k-512x512',
    'segvit_eva02-l14_8xb2-80k_ade20k-512x512',
]
BATCH = 2
CLASSES_PER_IMAGE = 12
GIB = 2**30


def _path(stem: str) -> str:
    return osp.join(REPO, 'configs', 'segvit', stem + '.py')


def _cut(stem: str, depth: int, with_cp: bool, crop: int) -> dict:
    """cfg-options: the config's backbone with ``depth`` blocks, features
    of its last three, built for ``crop`` x ``crop`` inputs."""
    cfg = load_config(_path(stem))
    kwargs = dict(cfg.model.backbone.get('model_kwargs') or {}, depth=depth)
    return {
        'model.backbone.model_kwargs': kwargs,
        'model.backbone.out_indices': (depth - 3, depth - 2, depth - 1),
        'model.backbone.with_cp': with_cp,
        'model.backbone.img_size': (crop, crop),
        'model.data_preprocessor.size': (crop, crop),
    }


def _params(stem: str) -> Dict[str, int]:
    model = build_model(_path(stem), device='meta')
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(
        total=total, trainable=trainable, depth=model.backbone.num_blocks)


def _batch(crop: tuple, num_classes: int) -> dict:
    """A data batch of random images and labels at ``crop``."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(BATCH):
        # CLASSES_PER_IMAGE horizontal bands of distinct classes
        classes = torch.randperm(num_classes)[:CLASSES_PER_IMAGE]
        rows = classes[torch.arange(crop[0]) * CLASSES_PER_IMAGE // crop[0]]
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=rows[None, :,
                                                None].expand(1, *crop).clone())
        sample.set_metainfo(
            dict(img_shape=crop, pad_shape=crop, ori_shape=crop))
        samples.append(sample)
    return dict(
        inputs=[
            torch.randint(0, 255, (3, *crop)).float() for _ in range(BATCH)
        ],
        data_samples=samples)


def _step_peak(stem: str, depth: int, with_cp: bool, crop: int) -> float:
    """Peak MiB of one training step of the cut model (child process)."""
    model = build_model(
        _path(stem),
        device='cpu',
        cfg_options=_cut(stem, depth, with_cp, crop))
    model.train()
    data = model.data_preprocessor(
        _batch((crop, crop), model.decode_head.num_classes), training=True)

    def step():
        losses = model.loss(data['inputs'], data['data_samples'])
        loss, _ = model.parse_losses(losses)
        loss.backward()

    _, peak = peak_mib(step)
    return peak


def memory_child(args, path: str) -> None:
    check_child()
    torch.manual_seed(0)
    # one discarded step: the process's one-off allocations (thread pools,
    # kernel caches) are not the model's
    _step_peak(args.configs[0], args.depths[0], False, args.measure_crop)
    out = {}
    for stem in args.configs:
        # activation checkpointing changes nothing on a frozen backbone
        frozen = load_config(_path(stem)).model.backbone.get('frozen')
        for with_cp in (False, ) if frozen else (False, True):
            for depth in args.depths:
                key = f'{stem}|{depth}|{int(with_cp)}'
                out[key] = _step_peak(stem, depth, with_cp, args.measure_crop)
                print(key, f'peak {out[key]:.0f} MiB', flush=True)
    write_child_result(path, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', default=CONFIGS)
    parser.add_argument(
        '--depths',
        nargs=2,
        type=int,
        default=[3, 4],
        help='the two depths measured (>= 3 blocks)')
    parser.add_argument(
        '--measure-crop',
        type=int,
        default=256,
        help='square crop the cut models are measured at')
    parser.add_argument(CHILD_FLAG, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args, args.memory_child)
        return
    argv = [
        '--configs', *args.configs, '--depths', *map(str, args.depths),
        '--measure-crop',
        str(args.measure_crop)
    ]
    peaks = run_child('benchmarks.timm_vit_memory', argv)
    d1, d2 = args.depths
    rows: List[str] = [
        f'| config | params (M) | trainable (M) | weights, gradients, AdamW '
        f'(GiB) | activations b{BATCH} (GiB) | total b{BATCH} (GiB) | '
        f'activations b{BATCH}, with_cp (GiB) | total b{BATCH}, with_cp '
        f'(GiB) |', '|---|---|---|---|---|---|---|---|'
    ]
    for stem in args.configs:
        p = _params(stem)
        crop = load_config(_path(stem)).crop_size
        scale = crop[0] * crop[1] / args.measure_crop**2
        states = (4 * p['total'] + 12 * p['trainable']) / GIB
        cells = []
        for cp in (0, 1):
            if f'{stem}|{d1}|{cp}' not in peaks:  # frozen: as without
                cp = 0
            p1, p2 = (peaks[f'{stem}|{d}|{cp}'] for d in (d1, d2))
            per_block = (p2 - p1) / (d2 - d1)
            full = scale * (p1 + per_block * (p['depth'] - d1)) / 1024
            cells += [full, states + full]
        rows.append(
            f'| {stem} | {p["total"] / 1e6:.1f} | {p["trainable"] / 1e6:.1f}'
            f' | {states:.1f} | ' + ' | '.join(f'{c:.1f}'
                                               for c in cells) + ' |')
    print(f'ESTIMATED training memory per GPU at batch {BATCH}, fp32 (CPU '
          f'peaks at {d1} and {d2} blocks and {args.measure_crop} pixels, '
          'extrapolated to the full depth and crop; no CUDA context or '
          'allocator cache):')
    print('\n'.join(rows))


if __name__ == '__main__':
    main()
