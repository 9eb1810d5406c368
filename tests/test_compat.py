"""The compatibility module: mmcv-lite shim and weights_only loading."""
import io
import pickle
import sys

import mmcv
import numpy as np
import pytest
import torch
from fixtures import run_python
from mmengine.logging import HistoryBuffer, MessageHub

from mmseg_segvit import compat


def test_check_mmcv_accepts_installed_version():
    assert compat.check_mmcv() == mmcv.__version__


@pytest.mark.parametrize('version', ['2.2.0', '1.7.2', '2.0.0rc1'])
def test_check_mmcv_rejects_out_of_range_versions(monkeypatch, version):
    monkeypatch.setattr(mmcv, '__version__', version)
    with pytest.raises(ImportError, match=f'mmcv {version}.*mmcv-lite>='):
        compat.check_mmcv()


def test_check_mmcv_says_what_to_install_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv', None)
    with pytest.raises(ImportError, match='not installed.*pip install'):
        compat.check_mmcv()


def test_lite_ops_fallbacks_and_errors():
    if compat.has_compiled_ops():
        pytest.skip('full mmcv installed: the shim is inactive')
    ops = sys.modules['mmcv.ops']
    assert isinstance(ops, compat._LiteOps)
    # The pure-PyTorch point_sample is the real one from mmcv-lite.
    feats = torch.arange(16.).reshape(1, 1, 4, 4)
    points = torch.tensor([[[0.125, 0.125], [0.875, 0.875]]])
    out = ops.point_sample(feats, points, align_corners=False)
    assert torch.allclose(out.flatten(), torch.tensor([0., 15.]))
    # Unknown ops raise the error mmseg's import guards catch.
    with pytest.raises(ModuleNotFoundError, match='mim install'):
        ops.CrissCrossAttention
    with pytest.raises(RuntimeError, match='compiled ops'):
        ops.sigmoid_focal_loss(torch.zeros(1), torch.zeros(1))
    # Dunder lookups (copy, pickle, inspect) see a normal module.
    assert not hasattr(ops, '__path_hooks__')


def test_shim_is_noop_when_compiled_ops_exist(monkeypatch):
    monkeypatch.setattr(compat, 'has_compiled_ops', lambda: True)
    monkeypatch.delitem(sys.modules, 'mmcv.ops', raising=False)
    assert compat.install_lite_ops() is False
    assert 'mmcv.ops' not in sys.modules


def test_mmseg_models_import_in_a_fresh_interpreter():
    code = ('import mmseg_segvit, mmseg.models, mmseg.apis;'
            'from mmseg.registry import MODELS;'
            'import mmseg_segvit.models;'
            "assert MODELS.get('ATMHead') is not None;"
            "assert MODELS.get('ATMLoss') is not None;"
            'print("ok")')
    assert run_python(code).strip().endswith('ok')


def _mmengine_checkpoint():
    """A checkpoint with the non-tensor state mmengine's runner saves."""
    hub = MessageHub('compat-test')
    for value in (1.5, 0.5, np.float64(0.25)):
        hub.update_scalar('train/loss', value)
    hub.update_info('iter', 7)
    return dict(
        meta=dict(
            seed=np.int64(0),
            epoch=0,
            iter=7,
            mmengine_version='0.10.7',
            dataset_meta=dict(classes=('a', 'b')),
            hist=np.arange(3, dtype=np.float32)),
        state_dict={'w': torch.ones(2)},
        message_hub=hub.state_dict(),
        optimizer={
            'state': {},
            'param_groups': [{
                'lr': np.float32(1e-3)
            }]
        })


def test_mmengine_checkpoint_round_trip_weights_only():
    buffer = io.BytesIO()
    torch.save(_mmengine_checkpoint(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    scalars = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(scalars, HistoryBuffer)
    assert scalars.mean() == pytest.approx(0.75)
    assert scalars.min() == pytest.approx(0.25)
    assert loaded['meta']['seed'] == 0
    np.testing.assert_array_equal(loaded['meta']['hist'], [0, 1, 2])
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_checkpoint_loads_in_a_fresh_interpreter(tmp_path):
    """As in ``mim test``: no HistoryBuffer exists yet when loading."""
    path = tmp_path / 'ckpt.pth'
    torch.save(_mmengine_checkpoint(), path)
    code = ('import mmseg_segvit, torch;'
            f'ckpt = torch.load({str(path)!r}, weights_only=True);'
            "print(ckpt['message_hub']['log_scalars']['train/loss'].max())")
    assert float(run_python(code).strip()) == pytest.approx(1.5)


def test_mmengine_load_checkpoint_uses_weights_only(tmp_path):
    from mmengine.runner import load_checkpoint
    path = tmp_path / 'ckpt.pth'
    torch.save(_mmengine_checkpoint(), path)
    model = torch.nn.Module()
    model.register_parameter('w', torch.nn.Parameter(torch.zeros(2)))
    load_checkpoint(model, str(path), map_location='cpu')
    assert torch.equal(model.w.data, torch.ones(2))


class _RunsCode:

    def __reduce__(self):
        return (print, ('pwned', ))


class _AbusesGetattr:

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__subclasses__'))


@pytest.mark.parametrize('payload', [_RunsCode(), _AbusesGetattr()])
def test_arbitrary_objects_are_refused(payload):
    buffer = io.BytesIO()
    torch.save({'x': payload}, buffer)
    buffer.seek(0)
    with pytest.raises((pickle.UnpicklingError, RuntimeError)):
        torch.load(buffer, weights_only=True)
