"""Command-line pieces shared by the tools: arguments several of them take and
how they read them (``tools/get_flops.py``, ``tools/export_onnx.py``, the
checkpoint converters)."""
import argparse
import contextlib
import io
import logging
import sys
import warnings
from typing import Iterator, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.config import Config, DictAction

from ..typing_utils import Size
from .configs import build_model, load_config

__all__ = [
    'add_shape_argument', 'add_cfg_options_argument', 'add_src_grid_argument',
    'add_verbose_argument', 'input_shape', 'model_and_shape', 'quiet_output'
]


def add_shape_argument(parser: argparse.ArgumentParser) -> None:
    """``--shape H [W]``: the input size (read with :func:`input_shape`)."""
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input size H [W] (default: the config crop_size)')


def add_cfg_options_argument(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options key=value ...``: settings merged into the config."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')


def add_src_grid_argument(parser: argparse.ArgumentParser) -> None:
    """``--src-grid H W``: the patch grid of the input's position embeddings
    (see :mod:`mmseg_segvit.checkpoints.pos_embed`)."""
    parser.add_argument(
        '--src-grid',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='patch grid of the position embeddings in SRC, needed when '
        'they are resized (default: the grid of the released checkpoints '
        'with that many positions: 24 24 for 576, 32 32 for 1024, ...)')


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: show what :func:`quiet_output` hides."""
    parser.add_argument(
        '--verbose',
        action='store_true',
        help='also show the log of mmengine (weight initialisation) and '
        "the warnings and messages of torch's exporter / tracer")


@contextlib.contextmanager
def quiet_output(verbose: bool = False) -> Iterator[None]:
    """Hide the log and warnings of the libraries a tool calls.

    Inside the block, mmengine's loggers show only errors, Python warnings
    are ignored and what the libraries print to ``sys.stdout`` /
    ``sys.stderr`` is kept aside, so a tool's own result lines (printed
    outside the block) are what its user sees. When the block raises, the
    kept text is written to ``sys.stderr`` first, so nothing that explains
    a failure is lost.

    Args:
        verbose (bool): Hide nothing (a tool's ``--verbose``).
            Default: False.
    """
    if verbose:
        yield
        return
    from mmengine.logging import MMLogger

    # the current logger, made now if the libraries have not, writes to the
    # real stdout after the block
    MMLogger.get_current_instance()
    loggers = list(MMLogger._instance_dict.values())
    levels = [logger.level for logger in loggers]
    kept = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(kept), \
                contextlib.redirect_stderr(kept):
            warnings.simplefilter('ignore')
            yield
    except BaseException:
        sys.stderr.write(kept.getvalue())
        raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def input_shape(cfg: Config, shape: Optional[Sequence[int]] = None) -> Size:
    """(H, W) of the input: ``--shape H [W]``, else the config's crop.

    Raises:
        SystemExit: If ``shape`` has other than 1 or 2 values or a value
            below 1, or neither it nor the config gives a size.
    """
    if shape:
        if len(shape) not in (1, 2):
            raise SystemExit('--shape takes H or H W')
        if min(shape) < 1:
            raise SystemExit(f'--shape {" ".join(map(str, shape))}: the '
                             'input height and width must be >= 1 pixel')
        return tuple(shape) * (2 // len(shape))
    crop = cfg.get('crop_size') or cfg.model.data_preprocessor.get('size')
    if not crop:
        raise SystemExit('the config has no crop_size; pass --shape H W')
    return tuple(crop)


def model_and_shape(args: argparse.Namespace) -> Tuple[nn.Module, Size]:
    """The model of ``args.config`` (``--cfg-options`` merged) built on the CPU
    without pretrained weights, and the input size (``--shape`` or the config's
    crop, :func:`input_shape`)."""
    cfg = load_config(args.config, args.cfg_options)
    return build_model(cfg, device='cpu'), input_shape(cfg, args.shape)
