"""Shared pytest fixtures (plain builders are in fixtures.py).

mmseg_segvit is imported first, as a config would.
"""
import os

# Tiny models gain nothing from intra-op threads, and the test processes
# (and the mim runs they start) would otherwise oversubscribe small CI
# machines.
os.environ.setdefault('OMP_NUM_THREADS', '1')

# isort: off
import mmseg_segvit  # noqa: F401  (compat before mmseg.models)
import pytest
import torch
from mmseg.utils import register_all_modules

from fixtures import tiny_segmentor
# isort: on

register_all_modules(init_default_scope=True)
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def demo_data_root(tmp_path_factory):
    """The demo dataset, generated once per test session."""
    from mmseg_segvit.datasets import generate_shapes_dataset
    root = str(tmp_path_factory.mktemp('data') / 'segvit_shapes')
    return generate_shapes_dataset(root)


@pytest.fixture
def five_class_checkpoint(tmp_path):
    """A tiny 5-class segmentor and its checkpoint file."""
    model = tiny_segmentor(num_classes=5)
    path = tmp_path / 'five.pth'
    torch.save(dict(meta=dict(iter=8), state_dict=model.state_dict()), path)
    return model, path
