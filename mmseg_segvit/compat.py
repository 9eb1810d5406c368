"""Compatibility with the two mmcv flavours and with torch >= 2.6 loading.

Imported first by :mod:`mmseg_segvit`. It does three things, each a no-op
where it is not needed:

1. :func:`check_mmcv` raises an error that says what to install when mmcv is
   missing or outside the range MMSegmentation 1.x accepts.
2. :func:`install_lite_ops` makes MMSegmentation importable on mmcv-lite.
   mmcv-lite ships ``mmcv/ops`` without the compiled ``mmcv._ext``, so
   ``import mmcv.ops`` fails, and mmseg 1.2 imports it unconditionally in a
   few modules. When (and only when) ``mmcv._ext`` is absent, a light
   ``mmcv.ops`` module is put in ``sys.modules``. It offers the pure-PyTorch
   ``point_sample`` from mmcv-lite's own ``mmcv/ops/point_sample.py`` and
   answers every other name with ``ModuleNotFoundError``, so mmseg's own
   ``try/except ModuleNotFoundError`` guards take their fallback. With full
   mmcv nothing is touched.
3. :func:`allow_mmengine_checkpoint_types` keeps ``torch.load`` at
   ``weights_only=True`` and allow-lists exactly the non-tensor types that
   mmengine writes into a checkpoint (its ``HistoryBuffer`` and numpy
   scalars/arrays in ``meta``), so ``mim test --checkpoint`` and ``--resume``
   work under torch >= 2.6 without ever unpickling arbitrary objects.
"""
import importlib.util
import os.path as osp
import sys
import types
from typing import Callable, List

__all__ = [
    'MMCV_MIN', 'MMCV_MAX', 'NUMPY_MULTIARRAY_MODULES', 'check_mmcv',
    'has_compiled_ops', 'install_lite_ops', 'mmengine_checkpoint_types',
    'allow_mmengine_checkpoint_types', 'apply'
]

# The range ``mmseg/__init__.py`` (1.2.x) asserts at import.
MMCV_MIN = '2.0.0rc4'
MMCV_MAX = '2.2.0'

_INSTALL_HINT = (
    "Install one mmcv flavour in the range mmsegmentation accepts "
    f"(>={MMCV_MIN},<{MMCV_MAX}): on CPU-only machines "
    f"`pip install \"mmcv-lite>={MMCV_MIN},<{MMCV_MAX}\"` "
    "(or `pip install \"mmseg_segvit[lite]\"`); on GPU machines the compiled "
    f"build `mim install \"mmcv>={MMCV_MIN},<{MMCV_MAX}\"`. "
    'Never install both: mmcv-lite overwrites the files of full mmcv.')

# Names mmseg imports from mmcv.ops at module level without a guard.
_LITE_OPS_MESSAGE = (
    "mmcv.ops.{name} needs mmcv's compiled ops (mmcv._ext), which mmcv-lite "
    f"does not ship. Install full mmcv: mim install \"mmcv>={MMCV_MIN},"
    f"<{MMCV_MAX}\" (uninstall mmcv-lite first).")


def check_mmcv() -> str:
    """Return the installed mmcv version or raise a clear ImportError."""
    try:
        import mmcv
    except ImportError as err:
        raise ImportError(f'mmseg_segvit needs mmcv, which is not installed. '
                          f'{_INSTALL_HINT}') from err
    from packaging.version import parse
    version = getattr(mmcv, '__version__', '0')
    if not parse(MMCV_MIN) <= parse(version) < parse(MMCV_MAX):
        raise ImportError(
            f'mmseg_segvit found mmcv {version}, outside the range '
            f'mmsegmentation 1.x accepts. {_INSTALL_HINT}')
    return version


def has_compiled_ops() -> bool:
    """True where mmcv's compiled extension (full mmcv) is installed."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except ImportError:
        return False


class _LiteOps(types.ModuleType):
    """Stand-in for ``mmcv.ops`` on mmcv-lite.

    Unknown names raise ``ModuleNotFoundError`` (the error mmseg's import
    guards catch) with a message that says how to get the real op.
    """

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            _LITE_OPS_MESSAGE.format(name=name), name='mmcv._ext')


def _needs_compiled(name: str) -> Callable:

    def unavailable(*args, **kwargs):
        raise RuntimeError(_LITE_OPS_MESSAGE.format(name=name))

    unavailable.__name__ = name
    return unavailable


def install_lite_ops() -> bool:
    """Put a light ``mmcv.ops`` in ``sys.modules`` when mmcv-lite is used.

    Returns:
        bool: True if the light module was installed (now or earlier).
    """
    current = sys.modules.get('mmcv.ops')
    if isinstance(current, _LiteOps):
        return True
    if current is not None or has_compiled_ops():
        return False
    import warnings

    import mmcv

    # mmcv.cnn warns on import that the deformable-attention op is missing;
    # on mmcv-lite that is expected and says nothing new.
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``')
    path = osp.join(osp.dirname(mmcv.__file__), 'ops', 'point_sample.py')
    spec = importlib.util.spec_from_file_location('mmcv.ops.point_sample',
                                                  path)
    point_sample_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(point_sample_mod)

    ops = _LiteOps('mmcv.ops', 'mmcv.ops of mmcv-lite: pure-PyTorch ops only')
    ops.__file__ = path
    ops.point_sample = point_sample_mod.point_sample
    ops.bilinear_grid_sample = point_sample_mod.bilinear_grid_sample
    ops.SimpleRoIAlign = point_sample_mod.SimpleRoIAlign
    # Imported unguarded by mmseg's FocalLoss, which calls it only for CUDA
    # tensors; calling it here says what to install.
    ops.sigmoid_focal_loss = _needs_compiled('sigmoid_focal_loss')
    sys.modules['mmcv.ops.point_sample'] = point_sample_mod
    sys.modules['mmcv.ops'] = ops
    mmcv.ops = ops
    return True


_BUILTIN_STATISTICS = frozenset(('min', 'max', 'mean', 'current'))


def _history_buffer_getattr(obj: object, name: str) -> object:
    """The one ``getattr`` an mmengine checkpoint needs.

    ``HistoryBuffer`` pickles its statistics methods (``min``, ``max``, ...) as
    ``getattr(HistoryBuffer, 'min')``. Loading may do that lookup and nothing
    else: any other object or name is refused.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    # The built-in statistics exist before any HistoryBuffer is created;
    # custom ones are registered in ``_statistics_methods``.
    allowed = _BUILTIN_STATISTICS.union(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise RuntimeError(
        f'refused to look up {name!r} on {obj!r} while loading a checkpoint '
        'with weights_only=True: only HistoryBuffer statistics are allowed')


#: Where numpy's pickles name the functions that rebuild arrays and
#: scalars: numpy 1.x writes ``numpy.core.multiarray``, numpy 2.x
#: ``numpy._core.multiarray``. A checkpoint saved under either must load
#: under either (compiled mmcv 2.1 wheels pin numpy 1.x on GPU machines).
NUMPY_MULTIARRAY_MODULES = ('numpy.core.multiarray', 'numpy._core.multiarray')


def _numpy_multiarray():
    """numpy's multiarray module, without numpy 2's deprecation warning."""
    import numpy as np
    if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    return multiarray


def _empty_bytes(*args: object) -> bytes:
    """The one ``bytes`` call a protocol-2 pickle makes: ``bytes()``.

    ``torch.save`` (pickle protocol 2) writes non-empty bytes through
    ``_codecs.encode``, which ``weights_only`` allows, but empty bytes as the
    call ``bytes()``. numpy arrays with no elements hold such empty bytes, for
    example a ``HistoryBuffer`` of a message hub with nothing logged. Any other
    call is refused.
    """
    if args:
        raise RuntimeError(
            'refused to call bytes with arguments while loading a checkpoint '
            'with weights_only=True: only bytes() is allowed')
    return b''


def mmengine_checkpoint_types() -> List[object]:
    """The non-tensor globals that mmengine 0.10 writes into checkpoints.

    ``HistoryBuffer`` (message hub state), the bound statistics methods it
    holds (through :func:`_history_buffer_getattr`), numpy scalars and
    arrays of numeric dtypes (seeds, logged values, metrics), and the
    ``bytes()`` of empty arrays (through :func:`_empty_bytes`). numpy's
    ``_reconstruct`` and ``scalar`` are allowed under both module names in
    :data:`NUMPY_MULTIARRAY_MODULES` (each name maps to the installed
    function; nothing is imported by name while loading).
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = _numpy_multiarray()
    numpy_functions = [(getattr(multiarray, name), f'{module}.{name}')
                       for module in NUMPY_MULTIARRAY_MODULES
                       for name in ('_reconstruct', 'scalar')]
    numeric = [
        t for t in set(np.sctypeDict.values())
        if issubclass(t, (np.number, np.bool_))
    ]
    dtype_classes = {type(np.dtype(t)) for t in numeric}
    return [
        HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
        (_empty_bytes, 'builtins.bytes'), *numpy_functions, np.ndarray,
        np.dtype, *sorted(dtype_classes, key=lambda c: c.__name__)
    ]


def allow_mmengine_checkpoint_types() -> bool:
    """Allow-list mmengine's checkpoint types for ``weights_only`` loading.

    Returns:
        bool: False on torch versions without ``add_safe_globals``.
    """
    import torch.serialization as serialization
    if not hasattr(serialization, 'add_safe_globals'):
        return False
    serialization.add_safe_globals(mmengine_checkpoint_types())
    return True


def apply() -> None:
    """Run every compatibility step; safe to call more than once."""
    check_mmcv()
    install_lite_ops()
    allow_mmengine_checkpoint_types()


apply()
