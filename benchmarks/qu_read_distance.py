"""How far QU's cross-attention reads, and how much position the ViT carries.

For a trained Shrunk model (a ``ShrunkViT`` backbone), runs validation
images through the backbone and prints, per QU decoder layer, the mean
distance between a query's cell and the tokens its cross-attention reads
(attention-weighted, heads averaged, in cells of the QU output grid), next
to the same mean for uniform weights (a query that pools the whole level).
A QU that has found its place reads near its own cell; one that has not
stays at the uniform figure.

It also prints what the ViT gives QU to find that place with: the mean
per-token norm of the position table (``pos_embed``, without the class
token's row) against that of the patch embeddings of the images.

Usage (from the repository root)::

    python -m benchmarks.qu_read_distance CONFIG CHECKPOINT [CHECKPOINT ...]
        [--images 16] [--cfg-options ...]

CHECKPOINT is a whole-model checkpoint of CONFIG (``mim train``'s
``iter_*.pth``); several are measured one after the other (e.g. a run and
its variant). The images are the first ``--images`` of the config's test
split (``data/segvit_shapes`` for the demo configs: run
``python -m mmseg_segvit.tools.make_demo_data`` first).
"""
import argparse
import os.path as osp
from typing import Dict, List, Tuple

import torch

__all__ = ['read_distances', 'position_norms', 'main']


def read_distances(model, inputs: torch.Tensor) -> List[Dict]:
    """Mean read distance of every cross-attention of the model's QU.

    Args:
        model: A segmentor whose backbone is a ``ShrunkViT``.
        inputs (Tensor): Pre-processed images, shape (B, 3, H, W).

    Returns:
        list[dict]: One row per (level, layer) with ``level``, ``layer``,
        ``grid`` (query grid), ``level_grid``, ``distance`` (mean over
        images and queries, in query-grid cells) and ``uniform`` (the same
        for uniform weights).
    """
    from mmseg_segvit.models.layers import cell_distances
    backbone = model.backbone
    qu = backbone.qu
    captured: Dict[Tuple[int, int], torch.Tensor] = {}
    handles = []

    def want_weights(module, args, kwargs):
        kwargs = dict(kwargs, need_weights=True, average_attn_weights=True)
        return args, kwargs

    for i, decoder in enumerate(qu.decoders):
        for j, layer in enumerate(decoder.layers):
            attn = layer.multihead_attn

            def keep(module, args, output, key=(i, j)):
                captured[key] = output[1].detach()  # (B, H*W, h*w)

            handles.append(
                attn.register_forward_pre_hook(want_weights, with_kwargs=True))
            handles.append(attn.register_forward_hook(keep))

    try:
        with torch.no_grad():
            backbone.return_levels = True
            outs = backbone(inputs)
    finally:
        backbone.return_levels = False
        for h in handles:
            h.remove()
    grid = tuple(outs[-1].shape[-2:])
    levels = [tuple(level.shape[-2:]) for level in outs[:-1]]

    rows = []
    for (i, j), weights in sorted(captured.items()):
        dist = cell_distances(grid, levels[i], weights)  # (H*W, h*w)
        rows.append(
            dict(
                level=i,
                layer=j,
                grid=grid,
                level_grid=levels[i],
                distance=(weights * dist).sum(-1).mean().item(),
                uniform=dist.mean().item()))
    return rows


def position_norms(model, inputs: torch.Tensor) -> Tuple[float, float]:
    """Mean per-token norm of the position table (class token's row left out)
    and of the patch embeddings of ``inputs``."""
    backbone = model.backbone
    with torch.no_grad():
        patches, _ = backbone.patch_embed(inputs)
        pos = backbone.pos_embed[0, 1:]
    return pos.norm(dim=-1).mean().item(), patches.norm(dim=-1).mean().item()


def _images(cfg, count: int) -> list:
    """The first ``count`` samples of the config's test split."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    if len(dataset) < count:
        raise ValueError(f'the test split has {len(dataset)} images, fewer '
                         f'than --images {count}')
    return pseudo_collate([dataset[i] for i in range(count)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='+')
    parser.add_argument('--images', type=int, default=16)
    from mmseg_segvit.utils.cli import add_cfg_options_argument
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)

    import mmseg_segvit  # noqa: F401  (registers the modules)
    # isort: split
    from mmengine.config import Config
    from mmseg.apis import init_model
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # the checkpoints hold every weight; no ViT start to load
    cfg.model.backbone.pop('init_cfg', None)
    batch = _images(cfg, args.images)

    print(f'QU read distance, {args.images} images of the test split of '
          f'{osp.basename(args.config)}\n')
    print('| checkpoint | level (grid) | layer | mean read distance '
          '(cells) | uniform weights |')
    print('| --- | --- | --- | --- | --- |')
    norms = []
    for ckpt in args.checkpoints:
        model = init_model(cfg, ckpt, device='cpu')
        if not hasattr(model.backbone, 'qu'):
            raise ValueError(f'{args.config}: the backbone has no QU '
                             '(a ShrunkViT config is needed)')
        inputs = model.data_preprocessor(batch, False)['inputs']
        for row in read_distances(model, inputs):
            print(f"| {ckpt} | {row['level']} ({row['level_grid'][0]}x"
                  f"{row['level_grid'][1]}) | {row['layer']} | "
                  f"{row['distance']:.2f} | {row['uniform']:.2f} |")
        norms.append((ckpt, *position_norms(model, inputs)))
    print('\n| checkpoint | position table norm per token | patch embedding '
          'norm per token |')
    print('| --- | --- | --- |')
    for ckpt, pos, patch in norms:
        print(f'| {ckpt} | {pos:.2f} | {patch:.2f} |')


if __name__ == '__main__':
    main()
