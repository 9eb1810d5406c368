"""How the ViT backbones load checkpoints: every tensor, or an error.

Position tables (``pos_embed``; ShrunkViT's QU queries ``qu.q.weight``) are
laid on the patch grid of the crop a model was built for, so a checkpoint
of another crop holds tables of another length. On every loading path
(``load_from``, ``init_cfg``, ``mmseg.apis.init_model``, ``--resume``;
all end in ``_load_from_state_dict``) :func:`fit_position_tables` resizes
them from the checkpoint's grid to the model's with the resize the model
uses at run time, instead of letting mmengine log a size mismatch and keep
the random table. The checkpoint's grid is the one it recorded
(:func:`record_position_grids` writes each table's grid into the state
dict's metadata when a backbone is saved), else the released grid for its
length (:mod:`mmseg_segvit.checkpoints.pos_embed`); never a square root.
Where neither is known, loading stops and says how to load the file.

:func:`check_loaded_vit` refuses, for a backbone loaded as part of a
segmentor (prefix ``backbone.``), a checkpoint that lacks some of its
weights, has weights it does not have or of other shapes: the run would
otherwise go on with those weights random. Loading the backbone on its
own (empty prefix) is an explicit call whose result lists the keys.

:func:`checkpoint_initializer` routes the ``init_cfg`` loaders users write
(mmengine's ``Pretrained`` with or without ``prefix``, mmseg's
``Pretrained_Part``, :class:`~mmseg_segvit.checkpoints.ViTPretrained`)
through :class:`~mmseg_segvit.checkpoints.ViTPretrained`, which loads every
ViT weight or fails naming the missing ones (mmseg's own ``init_weights``
ignores ``prefix`` and loads with ``strict=False``).
"""
from typing import Callable, Dict, Optional, Tuple

from mmengine.logging import print_log
from torch import Tensor, nn

from ...checkpoints.layout import OFFICIAL, segvit_layout
from ...checkpoints.pos_embed import GRIDS_KEY, source_grid
from ...typing_utils import Grid
from ..load_checks import compare_keys, key_problems, modules_of

__all__ = [
    'PositionTable', 'record_position_grids', 'fit_position_tables',
    'check_loaded_vit', 'checkpoint_initializer', 'position_table_of_vit',
    'LOADING_INITS'
]

#: ``init_cfg`` types that load a checkpoint into the backbone.
LOADING_INITS = ('Pretrained', 'Pretrained_Part', 'ViTPretrained')

#: A position table: its grid in the model, the rows before the grid
#: (class token) and ``resize(table, src_grid, dst_grid) -> table``.
PositionTable = Tuple[Grid, int, Callable[[Tensor, Grid, Grid], Tensor]]

_UNKNOWN_GRID = (
    'load it into a model built for the crop it was trained at (set '
    'model.backbone.img_size to it: the backbone resizes its position '
    'embeddings to every input size at run time, so that model predicts '
    'and fine-tunes at other sizes as it is), or give the grid '
    "(backbone.init_cfg=dict(type='ViTPretrained', checkpoint=FILE, "
    "prefix='backbone.', src_grid=(H, W))). Checkpoints saved from this "
    'version record their grid')


def record_position_grids(module: nn.Module, state_dict: dict, prefix: str,
                          local_metadata: dict) -> None:
    """State-dict post-hook: record the grid of each position table in the
    module's metadata (``local_metadata[GRIDS_KEY]``)."""
    local_metadata[GRIDS_KEY] = {
        key: tuple(int(s) for s in grid)
        for key, (grid, _, _) in module.position_tables().items()
    }


def fit_position_tables(module: nn.Module, state_dict: dict, prefix: str,
                        local_metadata: dict, *args) -> None:
    """Load-state pre-hook: resize the checkpoint's position tables to the
    module's grids.

    A table is resized when the checkpoint records another grid than the
    module's, or when its length differs from the module's (then from the
    recorded grid, else the released grid for that length). Tables of
    another width are left to the shape check.

    Raises:
        ConversionError: The checkpoint's grid cannot be known, or the
            recorded grid does not hold the table's positions; the message
            says how to load the file.
    """
    recorded = (local_metadata or {}).get(GRIDS_KEY) or {}
    for key, (grid, prefix_tokens, resize) in \
            module.position_tables().items():
        value = state_dict.get(prefix + key)
        own = module.get_parameter(key)
        if value is None or value.dim() != own.dim() \
                or value.shape[-1] != own.shape[-1]:
            continue  # absent, or of another width: the checks name it
        src = recorded.get(key)
        src = None if src is None else tuple(int(s) for s in src)
        same_length = tuple(value.shape) == tuple(own.shape)
        if same_length and src in (None, tuple(grid)):
            continue  # nothing says it lies on another grid
        src = source_grid(
            value, src, prefix + key, prefix_tokens,
            getattr(module, 'unknown_grid_advice', _UNKNOWN_GRID))
        state_dict[prefix + key] = resize(value, src, tuple(grid))
        print_log(
            f'{prefix}{key}: resized from the checkpoint\'s {src[0]}x'
            f'{src[1]} grid to the model\'s {grid[0]}x{grid[1]}',
            logger='current')


def check_loaded_vit(module: nn.Module, state_dict: dict, prefix: str,
                     *args) -> None:
    """Load-state pre-hook: refuse a partial load of the backbone.

    Checks every tensor of the backbone except those of the modules in
    ``module.separately_checked`` (ShrunkViT's ``qu``, which has its own
    check), when the backbone is loaded as part of a model (non-empty
    ``prefix``). An official SegViT file that was not converted is left to
    the decode head's check, which names the converter.

    Raises:
        ValueError: Naming the missing, extra or differently shaped
            weights and what to do.
    """
    if not prefix or segvit_layout(state_dict) == OFFICIAL:
        return
    skip = tuple(f'{name}.' for name in module.separately_checked)
    expected = {
        k: v
        for k, v in module.state_dict(keep_vars=True).items()
        if not k.startswith(skip)
    }
    report = compare_keys(expected, state_dict, prefix)
    unexpected = [k for k in report.unexpected if not k.startswith(skip)]
    name, kind = prefix[:-1], type(module).__name__
    if report.missing and not report.present:
        raise ValueError(
            f'the checkpoint has no weights for {name} ({kind}): loading it '
            f'would leave {modules_of(report.missing)} at random '
            'initialisation. If the file holds ViT weights alone, load it '
            "with backbone.init_cfg=dict(type='ViTPretrained', "
            'checkpoint=FILE) (or model.pretrained); for a segmentor '
            'checkpoint, check that its backbone is saved under '
            f"'{prefix}'")
    problems = key_problems(
        prefix, report.missing, unexpected, report.mismatched, owner=name)
    if problems:
        raise ValueError(
            'the checkpoint ' + ' and '.join(problems) + f' for {name} '
            f'({kind}), which would leave them at random initialisation: '
            f'it was trained with another {name} (num_layers, embed_dims, '
            'patch_size, final_norm, with_cls_token); use a checkpoint of '
            'this configuration, or load its ViT weights alone with '
            "backbone.init_cfg=dict(type='ViTPretrained', checkpoint=FILE, "
            "prefix='backbone.')")


def checkpoint_initializer(init_cfg) -> Tuple[Optional[Callable], list]:
    """The loading initialiser of a backbone's ``init_cfg``, as a
    :class:`~mmseg_segvit.checkpoints.ViTPretrained`, and the other
    initialisers (applied before it).

    ``Pretrained`` (mmengine; ``checkpoint``, ``prefix``) becomes
    ``ViTPretrained(checkpoint, prefix=prefix)``; mmseg's
    ``Pretrained_Part`` (the ``image_encoder.`` part of a file) becomes
    ``ViTPretrained(checkpoint, prefix='image_encoder.')``.

    Returns:
        tuple: The initialiser (None without one) and the other
        ``init_cfg`` entries.

    Raises:
        ValueError: Several loading entries, or unknown keys in one.
    """
    from ...checkpoints.timm_vit import ViTPretrained
    if init_cfg is None:
        return None, []
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg)
    loading = [c for c in cfgs if c.get('type') in LOADING_INITS]
    others = [c for c in cfgs if c.get('type') not in LOADING_INITS]
    if not loading:
        return None, others
    if len(loading) > 1:
        raise ValueError(
            f'backbone.init_cfg loads {len(loading)} checkpoints '
            f'({[c.get("checkpoint") for c in loading]}): give one')
    cfg = dict(loading[0])
    kind = cfg.pop('type')
    cfg.pop('map_location', None)  # loaded on CPU
    if kind == 'Pretrained_Part':
        cfg.setdefault('prefix', 'image_encoder.')
    allowed = {'checkpoint', 'prefix', 'src_grid'}
    if kind != 'ViTPretrained':
        allowed.discard('src_grid')
    unknown = sorted(set(cfg) - allowed)
    if unknown or 'checkpoint' not in cfg:
        raise ValueError(
            f'backbone.init_cfg {loading[0]}: {kind} takes '
            f'{sorted(allowed)} (checkpoint required), got unknown '
            f'{unknown}')
    return ViTPretrained(**cfg), others


def position_table_of_vit(backbone: nn.Module) -> Dict[str, PositionTable]:
    """The plain ViT's table: ``pos_embed`` (class token first) on the patch
    grid of ``img_size``, resized with mmseg's resize."""
    from ...checkpoints.pos_embed import resize_pos_embed
    from ...grids import patch_grid
    mode = getattr(backbone, 'interpolate_mode', 'bicubic')

    def resize(table: Tensor, src: Grid, dst: Grid) -> Tensor:
        return resize_pos_embed(table, dst, src, mode)

    return {
        'pos_embed': (patch_grid(backbone.img_size,
                                 backbone.patch_size), 1, resize)
    }
