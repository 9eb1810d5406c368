"""ONNX export (mmseg_segvit.deploy): tiny models, onnxruntime on CPU.

onnx, onnxruntime and onnxscript come from the ``tests`` extra.
"""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from mmseg_segvit.deploy import (SegmentorForExport, check_onnx,
                                 check_shapes, choose_exporter, export_onnx,
                                 trace_shape)
from fixtures import REPO, tiny_segmentor, tiny_segmentor_cfg

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

def _tiny():
    torch.manual_seed(0)
    return tiny_segmentor(num_classes=5, size=(32, 32), dropout=0.0).eval()


def _tiny_shrunk():
    cfg = ConfigDict(
        tiny_segmentor_cfg(
            num_classes=4, in_channels=16, embed_dims=16, use_stages=1,
            use_proj=False, dropout=0.0, mask_mode='per_layer',
            loss_decode=dict(type='ATMLoss', num_classes=4, dec_layers=2)))
    cfg.backbone.update(
        type='ShrunkViT', qd_index=1, out_indices=[0, 2],
        qu_cfg=dict(embed_dims=16, num_heads=2, num_layers=1))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def _assert_close(results):
    for res in results:
        assert res.passed(1e-4, 0.999), res


def test_wrapper_is_the_segmentors_inference():
    model = _tiny()
    x = torch.randn(2, 3, 24, 40)
    metas = [dict(img_shape=(24, 40), pad_shape=(24, 40))] * 2
    with torch.no_grad():
        ref = model.encode_decode(x, metas)
        scores = SegmentorForExport(model)(x)
        labels = SegmentorForExport(model, output='labels')(x)
    torch.testing.assert_close(scores, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, ref.argmax(1))


def test_dynamic_export_runs_at_other_sizes(tmp_path):
    model = _tiny()
    path = str(tmp_path / 'tiny.onnx')
    # the trained grid: traced one patch taller and two wider (non-square)
    assert trace_shape(model, (32, 32)) == (40, 48)
    assert check_shapes(model, (32, 32), True) == [(1, 40, 48), (2, 32, 32)]
    wrapper = export_onnx(model, path, (32, 32), dynamic=True)
    _assert_close(
        check_onnx(path, wrapper, [(1, 32, 32), (2, 24, 40), (1, 56, 16)]))


def _int_constants(path):
    """Every integer in the graph's initializers and Constant nodes."""
    graph = onnx.load(path).graph
    arrays = [onnx.numpy_helper.to_array(t) for t in graph.initializer]
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == 'Constant' and attr.name == 'value':
                arrays.append(onnx.numpy_helper.to_array(attr.t))
    return {
        int(v)
        for a in arrays if a.dtype.kind in 'iu' for v in a.ravel()
    }


def test_dynamic_graph_has_no_sizes_of_the_example(tmp_path):
    model = _tiny()
    path = str(tmp_path / 'tiny.onnx')
    export_onnx(model, path, (32, 32), dynamic=True)  # traced at 40 x 48
    baked = {40, 48, 5 * 6}  # image size, token count (grid 5 x 6)
    assert not baked & _int_constants(path)
    # a static export does hold them
    static = str(tmp_path / 'static.onnx')
    export_onnx(model, static, (40, 48))
    assert baked & _int_constants(static)
    inputs = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in inputs] == [
        'batch', 3, 'height', 'width'
    ]


@pytest.mark.parametrize('output', ['scores', 'labels'])
@pytest.mark.parametrize('order', ['faithful', 'fast'])
def test_static_export_outputs_and_orders(tmp_path, output, order):
    model = _tiny()
    path = str(tmp_path / 'tiny.onnx')
    wrapper = export_onnx(
        model, path, (24, 40), output=output, order=order)
    results = check_onnx(path, wrapper, [(1, 24, 40)])
    _assert_close(results)
    assert (results[0].max_abs_diff is None) == (output == 'labels')


def test_shrunk_exports_static(tmp_path):
    model = _tiny_shrunk()
    path = str(tmp_path / 'shrunk.onnx')
    wrapper = export_onnx(model, path, (40, 24))
    _assert_close(check_onnx(path, wrapper, [(1, 40, 24)]))


@pytest.mark.slow  # torch.export: ~25 s on 2 cores
def test_dynamic_shrunk_goes_through_dynamo(tmp_path):
    model = _tiny_shrunk()
    assert choose_exporter(model, True) == 'dynamo'
    assert choose_exporter(model, False) == 'torchscript'
    assert choose_exporter(_tiny(), True) == 'torchscript'
    with pytest.raises(ValueError, match='needs the dynamo exporter'):
        choose_exporter(model, True, 'torchscript')
    path = str(tmp_path / 'shrunk.onnx')
    wrapper = export_onnx(model, path, (32, 32), dynamic=True)
    # the trained grid, and a non-square one with an odd QD grid
    _assert_close(check_onnx(path, wrapper, [(1, 32, 32), (3, 40, 24)]))


def test_dynamic_needs_multiples_of_the_patch(tmp_path):
    with pytest.raises(ValueError, match='multiple of the patch size 8'):
        export_onnx(_tiny(), str(tmp_path / 'x.onnx'), (30, 32), dynamic=True)


def test_cli_exports_the_demo_config(tmp_path):
    out = str(tmp_path / 'demo.onnx')
    proc = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'export_onnx.py'),
        osp.join(REPO, 'configs', 'segvit',
                 'segvit_vit-t8_1xb8-500iter_shapes-128x128.py'), 'none', out,
        '--shape', '64', '--dynamic'
    ], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if 'argmax' in line]
    assert len(lines) == 2 and all(line.endswith('ok') for line in lines)
    assert '1x3x64x64' in lines[0] and '2x3x72x80' in lines[1]
