"""Run one of MMSegmentation's packaged tools with SegViT loaded first.

``python -m mmseg_segvit.tools.mmseg_tool TOOL [ARGS...]``

MMSegmentation ships its tools (``get_flops``, ``browse_dataset``,
``analyze_logs``, ``confusion_matrix``, ``benchmark``, ...) inside the
wheel, under ``mmseg/.mim/tools``; ``mim run mmsegmentation TOOL ARGS``
runs them. Some of them import ``mmseg.models`` before they read the
config, so on mmcv-lite they fail at ``import mmcv.ops`` before the
config's ``custom_imports`` can load :mod:`mmseg_segvit` and its
compatibility layer. This command imports :mod:`mmseg_segvit` first and then
runs the same script, with the same arguments, in this process. With full
mmcv ``mim run mmsegmentation TOOL ARGS`` works as well.

Two bugs of the installed tools are worked around here, only in this
process and only for the tool concerned:

- ``get_flops`` (MMSeg 1.2.2) passes both ``input_shape`` and ``inputs`` to
  mmengine's ``get_model_complexity_info``, which refuses that for every
  model (open-mmlab/mmsegmentation#3241, fixed upstream after 1.2.2 by
  dropping ``input_shape``); this command drops it the same way.
- ``browse_dataset`` hands the visualiser a transposed (non-contiguous)
  image view; ``SegLocalVisualizer`` draws the class names with
  ``cv2.rectangle`` on an array of the same memory layout, which OpenCV 5
  refuses ("Layout of the output array img is incompatible with cv::Mat").
  The image is made contiguous before drawing.

And one silent failure is refused: ``benchmark`` times test images 6 to
200 and, with fewer test images, writes ``"average_fps": NaN`` and exits
0. This command stops first with an error that says how many images the
config's test split has and how many are needed, and never writes a NaN
result.

``TOOL`` is a script name (``get_flops``) or, where several scripts share
a name, its folder and name (``misc:browse_dataset``), as in ``mim run``.
"""
import contextlib
import functools
import math
import os
import os.path as osp
import re
import runpy
import sys
from typing import Callable, Dict, List, Optional, Sequence

__all__ = ['mmseg_tools_dir', 'find_tool', 'run_tool', 'main']


def mmseg_tools_dir() -> str:
    """The ``tools`` folder packaged in the installed MMSegmentation."""
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'MMSegmentation at {osp.dirname(mmseg.__file__)} ships no '
            'tools folder (.mim/tools); install it from a wheel')
    return path


def _all_tools(root: str) -> List[str]:
    return sorted(
        osp.relpath(osp.join(folder, name), root)[:-3].replace(os.sep, ':')
        for folder, _, files in os.walk(root) for name in files
        if name.endswith('.py') and not name.startswith('_'))


def find_tool(name: str) -> str:
    """Path of MMSeg's tool ``name`` (``get_flops``, ``misc:browse_dataset``).

    Like ``mim run``, a bare name that several scripts share picks the one
    in the shallowest folder.

    Raises:
        ValueError: If no packaged tool has that name.
    """
    root = mmseg_tools_dir()
    tools = _all_tools(root)
    matches = [t for t in tools if t == name or t.endswith(':' + name)]
    if not matches:
        raise ValueError(f'MMSegmentation has no tool {name!r}; it has: ' +
                         ', '.join(tools))
    matches.sort(key=lambda t: (t.count(':'), t))
    return osp.join(root, *matches[0].split(':')) + '.py'


def _fix_get_flops() -> None:
    """Let ``get_model_complexity_info`` ignore ``input_shape`` when the caller
    also passes ``inputs`` (what MMSeg 1.2.2's get_flops does), and count fused
    attention (:func:`register_flop_handles`)."""
    import mmengine.analysis as analysis

    from mmseg_segvit.utils.flops import register_flop_handles
    register_flop_handles()
    original = analysis.get_model_complexity_info
    if getattr(original, '_drops_input_shape', False):
        return

    @functools.wraps(original)
    def complexity_info(model, input_shape=None, inputs=None, **kwargs):
        if inputs is not None:
            input_shape = None
        return original(model, input_shape, inputs, **kwargs)

    complexity_info._drops_input_shape = True
    analysis.get_model_complexity_info = complexity_info


def _fix_browse_dataset() -> None:
    """Draw on a contiguous copy of the image (OpenCV 5 needs one)."""
    import numpy as np
    from mmseg.visualization import SegLocalVisualizer
    original = SegLocalVisualizer._draw_sem_seg
    if getattr(original, '_contiguous', False):
        return

    @functools.wraps(original)
    def draw_sem_seg(self, image, *args, **kwargs):
        return original(self, np.ascontiguousarray(image), *args, **kwargs)

    draw_sem_seg._contiguous = True
    SegLocalVisualizer._draw_sem_seg = draw_sem_seg


def _benchmark_images(script: str) -> int:
    """How many test images ``benchmark`` times (its ``total_iters``)."""
    with open(script) as f:
        found = re.search(r'^\s*total_iters\s*=\s*(\d+)', f.read(), re.M)
    return int(found[1]) if found else 200


def _check_benchmark(script: str, args: Sequence[str]) -> None:
    """Refuse a benchmark that would time no image.

    MMSeg's ``benchmark`` times test images ``num_warmup + 1`` to
    ``total_iters`` (6 to 200) and reports their mean; with fewer test images
    it writes ``"average_fps": NaN`` and exits 0.
    """
    positional = [a for a in args if not a.startswith('-')]
    if not positional or not osp.isfile(positional[0]):
        return  # the tool's own argument parsing says what is missing
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    config = positional[0]
    if len(positional) > 1 and not osp.isfile(positional[1]):
        # the tool would silently time randomly initialised weights
        raise SystemExit(f'error: checkpoint {positional[1]} not found')
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    needed = _benchmark_images(script)
    count = len(DATASETS.build(cfg.test_dataloader.dataset))
    if count < needed:
        raise SystemExit(
            f"error: MMSeg's benchmark times test images 6 to {needed} "
            f'(batch 1) and reports their mean, but the test_dataloader of '
            f'{config} has {count} images, so it would report NaN. Point '
            'test_dataloader.dataset of the config at a split with at '
            f'least {needed} images (e.g. the training images: '
            'docs/tools.md shows the config for the demo).')


class _NoNaNResults:
    """While ``benchmark`` runs, refuse to write a result that is NaN."""

    def __enter__(self):
        import mmengine.fileio as fileio
        self._fileio, self._dump = fileio, fileio.dump
        original = self._dump

        @functools.wraps(original)
        def dump(obj, *args, **kwargs):
            bad = [
                k for k, v in (obj.items() if isinstance(obj, dict) else ())
                if isinstance(v, float) and math.isnan(v)
            ]
            if bad:
                raise SystemExit(
                    f'error: the tool measured nothing for {", ".join(bad)} '
                    '(NaN); not writing it as a result')
            return original(obj, *args, **kwargs)

        fileio.dump = dump
        return self

    def __exit__(self, *exc) -> None:
        self._fileio.dump = self._dump


# Work-arounds for bugs of the installed MMSeg tools, by script name.
_TOOL_FIXES: Dict[str, Callable[[], None]] = {
    'get_flops': _fix_get_flops,
    'browse_dataset': _fix_browse_dataset,
}
# Checks of a tool's arguments before it runs, by script name.
_TOOL_CHECKS: Dict[str, Callable[[str, Sequence[str]], None]] = {
    'benchmark': _check_benchmark,
}


def run_tool(name: str, args: Sequence[str]) -> None:
    """Run MMSeg's tool ``name`` with ``args`` as its command line."""
    import mmseg_segvit  # noqa: F401  (compat before the tool's imports)
    script = find_tool(name)
    stem = osp.splitext(osp.basename(script))[0]
    fix = _TOOL_FIXES.get(stem)
    if fix is not None:
        fix()
    check = _TOOL_CHECKS.get(stem)
    if check is not None:
        check(script, args)
    guard = (
        _NoNaNResults() if stem == 'benchmark' else contextlib.nullcontext())
    saved = sys.argv
    sys.argv = [script, *args]
    try:
        with guard:
            runpy.run_path(script, run_name='__main__')
    finally:
        sys.argv = saved


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        if not argv:
            sys.exit(2)
        return
    run_tool(argv[0], argv[1:])


if __name__ == '__main__':
    main()
