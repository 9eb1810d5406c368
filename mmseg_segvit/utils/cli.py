"""Pieces shared by the command-line tools that take a config and an input
size (``tools/get_flops.py``, ``tools/export_onnx.py``)."""
from typing import Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.registry import init_default_scope

__all__ = ['load_config', 'input_shape']


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` with ``--cfg-options`` merged, in its default
    scope (mmseg)."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return cfg


def input_shape(cfg: Config,
                shape: Optional[Sequence[int]] = None) -> Tuple[int, int]:
    """(H, W) of the input: ``--shape H [W]``, else the config's crop.

    Raises:
        SystemExit: If ``shape`` has other than 1 or 2 values, or neither it
            nor the config gives a size.
    """
    if shape:
        if len(shape) not in (1, 2):
            raise SystemExit('--shape takes H or H W')
        return tuple(shape) * (2 // len(shape))
    crop = cfg.get('crop_size') or cfg.model.data_preprocessor.get('size')
    if not crop:
        raise SystemExit('the config has no crop_size; pass --shape H W')
    return tuple(crop)
