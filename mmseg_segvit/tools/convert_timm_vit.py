"""Convert pretrained ViT weights for the ``pretrained`` of a config.

``python tools/convert_timm_vit.py SRC DST [--config CONFIG | --img-size H
[W]]`` (or ``python -m mmseg_segvit.tools.convert_timm_vit``).

SRC: a timm checkpoint (``.safetensors`` or ``.pth``, timm names), an
original JAX ``.npz`` or an mmseg-converted ``.pth``. DST: mmseg
``VisionTransformer`` weights with the position embeddings resized to the
crop. With ``--config`` the crop comes
from the config and DST is checked to fill its backbone exactly.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence

import torch

from mmseg_segvit.checkpoints import (ConversionError, UnsafeCheckpointError,
                                      load_pretrained_vit)
from mmseg_segvit.grids import patch_grid
from mmseg_segvit.utils.cli import add_src_grid_argument
from mmseg_segvit.utils.configs import build_model

__all__ = ['convert_file', 'main']


def convert_file(src: str,
                 dst: str,
                 config: Optional[str] = None,
                 img_size: Optional[Sequence[int]] = None,
                 patch_size: int = 16,
                 src_grid: Optional[Sequence[int]] = None) -> List[str]:
    """Convert ``src`` to ``dst``; returns notes on what changed.

    ``src_grid`` is the patch grid (h, w) the file's position embeddings were
    trained on (default: the released grid for their length).
    """
    backbone, grid = None, None
    final_norm, mode = False, 'bicubic'
    if config is not None:
        backbone = build_model(config).backbone
        grid = patch_grid(backbone.img_size, backbone.patch_size)
        final_norm, mode = backbone.final_norm, backbone.interpolate_mode
    elif img_size is not None:
        grid = patch_grid(img_size, patch_size)
    state_dict, notes = load_pretrained_vit(src, grid, final_norm, mode,
                                            src_grid)
    if backbone is not None:
        backbone.load_state_dict(state_dict, strict=True, assign=True)
        notes.append(f'fills the backbone of {osp.basename(config)} '
                     '(strict=True)')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(
        dict(
            state_dict=state_dict,
            meta=dict(converted_from=osp.basename(src))), dst)
    return notes


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Convert timm (or mmseg) ViT weights for mmseg\'s '
        'VisionTransformer, resizing the position embeddings.')
    parser.add_argument('src', help='.safetensors, .pth or .npz file')
    parser.add_argument('dst', help='output .pth file')
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        '--config',
        help='take the crop from this config and '
        'check the result against its backbone')
    group.add_argument(
        '--img-size',
        type=int,
        nargs='+',
        metavar='SIZE',
        help='crop size: H [W]')
    parser.add_argument('--patch-size', type=int, default=16)
    add_src_grid_argument(parser)
    args = parser.parse_args(argv)
    try:
        notes = convert_file(args.src, args.dst, args.config, args.img_size,
                             args.patch_size, args.src_grid)
    except (ConversionError, UnsafeCheckpointError, FileNotFoundError,
            RuntimeError) as err:
        raise SystemExit(f'error: {err}')
    print('\n'.join([f'note: {n}' for n in notes] + [f'wrote {args.dst}']))


if __name__ == '__main__':
    main()
