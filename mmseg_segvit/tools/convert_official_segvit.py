"""Convert a released SegViT checkpoint for this package's configs.

``python tools/convert_official_segvit.py SRC DST [--config CONFIG]``
(or ``python -m mmseg_segvit.tools.convert_official_segvit``).

SRC is one of the official ``.pth`` files (mmseg 0.24 layout). Without
``--config`` the matching config of ``configs/segvit`` is found from the
checkpoint's backbone, class count and crop size. The model of the config is
built and DST is written only if the converted weights fill it exactly
(``load_state_dict(strict=True)``). DST's ``meta['dataset_meta']`` holds
the class names and palette (the official ``CLASSES`` / ``PALETTE``, else
the config's dataset's), which ``init_model`` and ``MMSegInferencer`` use.
"""
import argparse
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from mmseg_segvit.checkpoints import (PACKAGE, ConversionError, ViTInfo,
                                      convert_official_state_dict,
                                      converted_dataset_meta,
                                      describe_official, get_state_dict,
                                      load_weights_file, segvit_layout)
from mmseg_segvit.grids import patch_grid
from mmseg_segvit.utils.cli import add_src_grid_argument
from mmseg_segvit.utils.configs import CONFIG_DIR, build_model, load_config

__all__ = ['config_signature', 'find_config', 'convert_file', 'main']

Signature = Tuple[Optional[int], Optional[int], Optional[int], Optional[int],
                  bool]


def config_signature(cfg: Config) -> Signature:
    """(embed_dims, num_layers, num_classes, position tokens, shrunk) of a
    config."""
    backbone = cfg.model.backbone
    grid = patch_grid(
        backbone.get('img_size', 224), backbone.get('patch_size', 16))
    tokens = grid[0] * grid[1] + 1
    return (backbone.get('embed_dims'), backbone.get('num_layers'),
            cfg.model.decode_head.get('num_classes'), tokens,
            backbone.get('type') == 'ShrunkViT')


def info_signature(info: ViTInfo) -> Signature:
    return (info['embed_dims'], info['num_layers'], info['num_classes'],
            info['pos_tokens'], info['shrunk'])


def find_config(info: ViTInfo, config_dir: str = CONFIG_DIR) -> str:
    """The config of ``config_dir`` whose model matches ``info``.

    Raises:
        ConversionError: None or several match.
    """
    if not osp.isdir(config_dir):
        raise ConversionError(
            f'no config folder at {config_dir}: pass --config')
    want = info_signature(info)
    found = []
    for name in sorted(os.listdir(config_dir)):
        if not name.endswith('.py'):
            continue
        path = osp.join(config_dir, name)
        cfg = load_config(path)
        # The released models use SegViT's softmax cross-attention; configs
        # of variants (e.g. k-means) share their shapes but not their model.
        variant = cfg.model.decode_head.get('cross_attn_cfg') or {}
        if variant.get('type', 'ATMCrossAttention') == 'ATMCrossAttention' \
                and config_signature(cfg) == want:
            found.append(path)
    if len(found) != 1:
        what = 'no config' if not found else f'{len(found)} configs'
        raise ConversionError(
            f'{what} in {config_dir} match a {info.name} with '
            f"{info['num_classes']} classes and {info['pos_tokens']} "
            'position tokens: pass --config')
    return found[0]


def convert_file(
        src: str,
        dst: str,
        config: Optional[str] = None,
        backbone_only: bool = False,
        src_grid: Optional[Sequence[int]] = None) -> Dict[str, object]:
    """Convert ``src`` and write ``dst`` after a strict load into ``config``.

    ``src_grid`` is the patch grid (h, w) of the checkpoint's position
    embeddings, needed only when they are resized and were not trained on
    a released grid.

    Returns:
        dict: ``config`` used, ``notes`` (dropped/resized keys, where the
        class names came from) and ``num_tensors`` written.

    Raises:
        ConversionError: A file already in this package's layout, or one
            that does not fit the config (the message names the keys).
    """
    checkpoint = load_weights_file(src)
    state_dict = get_state_dict(checkpoint, src)
    if segvit_layout(state_dict) == PACKAGE:
        raise ConversionError(
            f'{src} is already in the layout of mmseg_segvit (decode_head.'
            'decoders.*): it needs no conversion; load it as it is '
            '(load_from, --checkpoint, init_model)')
    if config is None:
        config = find_config(describe_official(state_dict))
    model = build_model(config)
    converted, notes = convert_official_state_dict(
        state_dict,
        model,
        path=src,
        backbone_only=backbone_only,
        src_grid=src_grid)
    target = model.backbone if backbone_only else model
    # assign=True puts the tensors into the (meta) model as they are
    target.load_state_dict(converted, strict=True, assign=True)
    meta = dict(
        converted_from=osp.basename(src),
        config=osp.basename(config),
        backbone_only=backbone_only)
    if not backbone_only:
        official_meta = checkpoint.get('meta')
        meta['dataset_meta'], note = converted_dataset_meta(
            official_meta if isinstance(official_meta, dict) else {},
            load_config(config), model.decode_head.num_classes)
        notes.append(note)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=converted, meta=meta), dst)
    return dict(config=config, notes=notes, num_tensors=len(converted))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official SegViT checkpoint (mmseg 0.24) to '
        'the layout of mmseg_segvit.')
    parser.add_argument('src', help='official .pth file')
    parser.add_argument('dst', help='output .pth file')
    parser.add_argument(
        '--config',
        help='config to convert for (default: the one in configs/segvit '
        'that matches the checkpoint)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='write only the backbone weights, for model.pretrained of a '
        'config with another class count')
    add_src_grid_argument(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        report = convert_file(args.src, args.dst, args.config,
                              args.backbone_only, args.src_grid)
    except (ConversionError, FileNotFoundError, RuntimeError) as err:
        raise SystemExit(f'error: {err}')
    lines: List[str] = [f"config: {report['config']}"]
    lines += [f'note: {n}' for n in report['notes']]
    lines.append(f"wrote {report['num_tensors']} tensors to {args.dst} "
                 '(loads with strict=True)')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
