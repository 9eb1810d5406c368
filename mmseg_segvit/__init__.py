"""mmseg_segvit: SegViT (NeurIPS 2022) for MMSegmentation 1.x.

Importing the package registers its models and datasets in MMSegmentation's
registries. The compatibility module comes first: it checks mmcv and makes
mmseg importable on mmcv-lite before anything imports ``mmseg.models``.
"""
# isort: off
from . import compat  # noqa: F401  (must stay the first import)
from . import datasets, engine, evaluation, models, utils  # noqa: F401,E402
from . import checkpoints  # noqa: F401,E402  (after models)
from .version import __version__, version_info  # noqa: E402
# isort: on

__all__ = [
    '__version__', 'version_info', 'compat', 'datasets', 'engine',
    'evaluation', 'models', 'utils', 'checkpoints'
]
