"""Crafted checkpoints: pickles that run code are refused by every loader
(torch, mmengine's Runner and load_checkpoint, our tools) and nothing runs."""
import io
import os
import pickle
import sys
import zipfile

import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

from mmseg_segvit.checkpoints import UnsafeCheckpointError, load_weights_file
from mmseg_segvit.tools import drop_class_weights


class _Payload:
    """Pickles to a call that creates ``path`` when unpickled."""

    def __init__(self, kind, path):
        self.kind, self.path = kind, str(path)

    def __reduce__(self):
        if self.kind == 'exec':
            return (exec, (f'open({self.path!r}, "w").write("pwned")', ))
        if self.kind == 'system':
            return (os.system, (f'touch {self.path}', ))
        return (open, (self.path, 'w'))  # 'open'


def _crafted(tmp_path, kind, where):
    marker = tmp_path / f'pwned_{kind}_{where}'
    payload = _Payload(kind, marker)
    ckpt = dict(meta=dict(iter=1), state_dict={'w': torch.zeros(2)})
    if where == 'meta':
        ckpt['meta']['note'] = payload
    else:
        ckpt['state_dict']['decode_head.q.weight'] = payload
    path = tmp_path / f'{kind}_{where}.pth'
    torch.save(ckpt, path)
    return path, marker


@pytest.mark.parametrize('kind', ['exec', 'system', 'open'])
def test_payload_runs_under_plain_pickle(tmp_path, kind):
    """The crafted files are real exploits (shown in a throwaway folder)."""
    path, marker = _crafted(tmp_path, kind, 'meta')
    with zipfile.ZipFile(path) as archive:  # torch.save's pickle, no tensors
        data = next(n for n in archive.namelist() if n.endswith('data.pkl'))
        unpickler = pickle.Unpickler(io.BytesIO(archive.read(data)))
        unpickler.persistent_load = lambda pid: None  # tensor storages
        # The payload in meta runs before the (storage-less) tensors fail.
        with pytest.raises(AttributeError):
            unpickler.load()
    assert marker.exists()


@pytest.mark.parametrize('where', ['meta', 'state_dict'])
@pytest.mark.parametrize('kind', ['exec', 'system', 'open'])
def test_crafted_checkpoint_is_refused_and_nothing_runs(
        tmp_path, kind, where, monkeypatch):
    path, marker = _crafted(tmp_path, kind, where)
    model = torch.nn.Linear(2, 1)
    loaders = [
        lambda: torch.load(path),  # torch's default: weights_only=True
        lambda: torch.load(path, weights_only=True),
        lambda: _load_checkpoint(str(path), map_location='cpu'),  # Runner
        lambda: load_checkpoint(model, str(path), map_location='cpu'),
    ]
    for load in loaders:
        with pytest.raises(pickle.UnpicklingError, match='Weights only'):
            load()
    monkeypatch.setattr(
        sys, 'argv',
        ['x', str(path), str(tmp_path / 'out.pth')])
    with pytest.raises(SystemExit, match=f'error: refused to load {path}'):
        drop_class_weights.main()
    assert not marker.exists()
    assert not (tmp_path / 'out.pth').exists()


def test_a_file_that_is_no_checkpoint_is_named_without_unsafe_advice(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'\x08\x07\x12\x07pytorch' * 8)
    with pytest.raises(
            UnsafeCheckpointError,
            match=f'{path} is not a readable PyTorch '
            'checkpoint') as info:
        load_weights_file(str(path))
    assert 'weights_only' not in str(info.value)  # no advice to turn it off
