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

``TOOL`` is a script name (``get_flops``) or, where several scripts share
a name, its folder and name (``misc:browse_dataset``), as in ``mim run``.
"""
import os
import os.path as osp
import functools
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
    matches = [
        t for t in tools if t == name or t.endswith(':' + name)
    ]
    if not matches:
        raise ValueError(f'MMSegmentation has no tool {name!r}; it has: ' +
                         ', '.join(tools))
    matches.sort(key=lambda t: (t.count(':'), t))
    return osp.join(root, *matches[0].split(':')) + '.py'


def _fix_get_flops() -> None:
    """Let ``get_model_complexity_info`` ignore ``input_shape`` when the
    caller also passes ``inputs`` (what MMSeg 1.2.2's get_flops does)."""
    import mmengine.analysis as analysis
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


# Work-arounds for bugs of the installed MMSeg tools, by script name.
_TOOL_FIXES: Dict[str, Callable[[], None]] = {
    'get_flops': _fix_get_flops,
    'browse_dataset': _fix_browse_dataset,
}


def run_tool(name: str, args: Sequence[str]) -> None:
    """Run MMSeg's tool ``name`` with ``args`` as its command line."""
    import mmseg_segvit  # noqa: F401  (compat before the tool's imports)
    script = find_tool(name)
    fix = _TOOL_FIXES.get(osp.splitext(osp.basename(script))[0])
    if fix is not None:
        fix()
    saved = sys.argv
    sys.argv = [script, *args]
    try:
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
