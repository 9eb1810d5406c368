"""ONNX export (mmseg_segvit.deploy): tiny models, onnxruntime on CPU.

onnx, onnxruntime and onnxscript come from the ``tests`` extra.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from fixtures import (DEMO_CONFIG, REPO, dynamic_export_checks, run_tool,
                      tiny_segmentor, tiny_segmentor_cfg,
                      tiny_shrunk_segmentor)
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from mmseg_segvit.deploy import (SegmentorForExport, check_onnx, check_shapes,
                                 choose_exporter, export_onnx, predict_labels,
                                 prepare_inputs, trace_shape)

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')


def _tiny(**kwargs):
    torch.manual_seed(0)
    return tiny_segmentor(
        num_classes=5, size=(32, 32), dropout=0.0, **kwargs).eval()


def _tiny_fused():
    """The shipped configs' backbone: FusedVisionTransformer, fused."""
    cfg = ConfigDict(tiny_segmentor_cfg(num_classes=5, dropout=0.0))
    cfg.backbone.update(type='FusedVisionTransformer', fused_attn=True)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def _tiny_shrunk():
    torch.manual_seed(0)
    return tiny_shrunk_segmentor(dropout=0.0)


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


def test_check_sizes_are_far_from_the_traced_one():
    model = _tiny()
    # the trained grid: traced one patch taller and two wider (non-square)
    assert trace_shape(model, (32, 32)) == (40, 48)
    assert trace_shape(model, (30, 33)) == (40, 40)  # rounded up to patches
    # traced, half (batch 2), about twice (non-square), off the patch grid
    assert check_shapes(model, (32, 32), True) == [(1, 40, 48), (2, 16, 16),
                                                   (1, 64, 80), (1, 25, 35)]
    assert check_shapes(model, (128, 128), True)[-1] == (1, 97, 131)
    assert check_shapes(model, (32, 32), False) == [(1, 32, 32)]


@pytest.mark.parametrize('build,order,output',
                         [(_tiny, 'faithful', 'scores'),
                          (_tiny, 'faithful', 'labels'),
                          (_tiny, 'fast', 'scores'), (_tiny, 'fast', 'labels'),
                          (_tiny_fused, 'fast', 'scores')])
def test_dynamic_export_is_pytorch_at_every_size(tmp_path, build, order,
                                                 output):
    """Every export option, at the tool's check sizes (far from the traced one,
    off the patch grid) and a few more: as PyTorch to 1e-5.

    The fast order used to keep the traced mask grid (3e-3 at 512x512).
    """
    model = build()
    path = str(tmp_path / 'tiny.onnx')
    wrapper = export_onnx(
        model, path, (32, 32), dynamic=True, order=order, output=output)
    shapes = check_shapes(model, (32, 32), True) + [(1, 8, 8), (2, 97, 131),
                                                    (1, 130, 24)]
    results = check_onnx(path, wrapper, shapes)
    for res in results:
        assert res.agreement == 1.0, res
        assert res.max_abs_diff is None or res.max_abs_diff < 1e-5, res


def test_graph_pads_sizes_off_the_patch_grid_as_pytorch(tmp_path):
    """97x131 with patch 8: PyTorch's patch embedding pads to 104x136 (a 13x17
    grid); so does the graph, which used to run on 12x16."""
    model = _tiny()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        feats = model.extract_feat(x)
        assert feats[-1].shape[-2:] == (13, 17)
        ref = model.encode_decode(
            x, [dict(img_shape=(97, 131), pad_shape=(97, 131))])
        torch.testing.assert_close(SegmentorForExport(model)(x), ref)
    path = str(tmp_path / 'tiny.onnx')
    wrapper = export_onnx(model, path, (32, 32), dynamic=True)
    (res, ) = check_onnx(path, wrapper, [(1, 97, 131)])
    assert res.agreement == 1.0 and res.max_abs_diff < 1e-5, res
    # an example off the grid traces as well
    wrapper = export_onnx(model, path, (30, 33), dynamic=True)
    _assert_close(check_onnx(path, wrapper, [(1, 97, 131), (1, 32, 32)]))


def _int_constants(path):
    """Every integer in the graph's initializers and Constant nodes."""
    graph = onnx.load(path).graph
    arrays = [onnx.numpy_helper.to_array(t) for t in graph.initializer]
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == 'Constant' and attr.name == 'value':
                arrays.append(onnx.numpy_helper.to_array(attr.t))
    return {int(v) for a in arrays if a.dtype.kind in 'iu' for v in a.ravel()}


@pytest.mark.parametrize('order', ['faithful', 'fast'])
def test_dynamic_graph_has_no_sizes_of_the_example(tmp_path, order):
    model = _tiny()
    path = str(tmp_path / 'tiny.onnx')
    # traced at 40 x 48: image size, token count (grid 5 x 6), fast grid
    export_onnx(model, path, (32, 32), dynamic=True, order=order)
    baked = {40, 48, 5 * 6, 5 * 4 * 6 * 4}
    assert not baked & _int_constants(path)
    # a static export does hold them
    static = str(tmp_path / 'static.onnx')
    export_onnx(model, static, (40, 48), order=order)
    assert baked & _int_constants(static)
    inputs = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value
            for d in inputs] == ['batch', 3, 'height', 'width']


@pytest.mark.parametrize('output', ['scores', 'labels'])
@pytest.mark.parametrize('order', ['faithful', 'fast'])
def test_static_export_outputs_and_orders(tmp_path, output, order):
    model = _tiny()
    path = str(tmp_path / 'tiny.onnx')
    wrapper = export_onnx(model, path, (24, 40), output=output, order=order)
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
    wrapper = export_onnx(model, path, (32, 32), dynamic=True, order='fast')
    # the trained grid, a non-square one with an odd QD grid, the tool's
    # sizes (half, twice, off the patch grid)
    results = check_onnx(path, wrapper,
                         [(1, 32, 32),
                          (3, 40, 24)] + check_shapes(model, (32, 32), True))
    for res in results:
        assert res.agreement == 1.0 and res.max_abs_diff < 1e-5, res


def test_slide_configs_are_refused_before_tracing(tmp_path):
    model = _tiny(
        test_cfg=dict(mode='slide', crop_size=(32, 32), stride=(24, 24)))
    path = tmp_path / 'x.onnx'
    with pytest.raises(
            ValueError,
            match=r"model\.test_cfg\.mode='slide' \(crop "
            r"\(32, 32\), stride \(24, 24\)\).*"
            r'--cfg-options model\.test_cfg\.mode=whole'):
        export_onnx(model, str(path), (32, 32))
    assert not path.exists()
    model.test_cfg['mode'] = 'whole'
    export_onnx(model, str(path), (32, 32))


def test_the_order_defaults_to_the_heads_own():
    """A head with fast_inference predicts in the fast order; so does its
    export unless told otherwise."""
    model = _tiny(fast_inference=True)
    assert SegmentorForExport(model).order == 'fast'
    assert SegmentorForExport(model, order='faithful').order == 'faithful'
    assert SegmentorForExport(_tiny()).order == 'faithful'
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        ref = model.encode_decode(
            x, [dict(img_shape=(40, 56), pad_shape=(40, 56))])
        torch.testing.assert_close(SegmentorForExport(model)(x), ref)


def test_pipeline_helpers_and_graph_give_inference_models_labels(tmp_path):
    """A 97x131 image through the demo config (its test pipeline resizes it to
    95x128, off the patch grid): prepare_inputs + the graph + predict_labels
    give inference_model's labels."""
    import onnxruntime as ort
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.backbone.update(num_layers=2, out_indices=[0, 1])
    cfg.model.decode_head.update(use_stages=2, num_layers=1)
    torch.manual_seed(0)
    model = init_model(cfg, None, device='cpu')
    path = str(tmp_path / 'demo.onnx')
    export_onnx(model, path, (128, 128), dynamic=True)
    image = np.random.default_rng(0).integers(
        0, 256, (97, 131, 3), dtype=np.uint8)
    inputs, meta = prepare_inputs(model.cfg, image)
    assert inputs.shape == (1, 3, 95, 128)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    scores = session.run(None, {'inputs': inputs})[0]
    labels = predict_labels(scores, meta)
    expected = inference_model(model, image).pred_sem_seg.data[0].numpy()
    assert labels.shape == expected.shape == (97, 131)
    assert (labels == expected).mean() == 1.0
    with pytest.raises(ValueError, match='export --output scores'):
        predict_labels(scores.argmax(1), meta)


def test_cli_exports_the_demo_config(tmp_path):
    out = str(tmp_path / 'demo.onnx')
    proc = run_tool('export_onnx.py', DEMO_CONFIG, 'none', out, '--shape',
                    '64', '--dynamic')
    lines = dynamic_export_checks(proc)
    sizes = ['1x3x64x64', '2x3x32x32', '1x3x128x144', '1x3x49x67']
    for size, line in zip(sizes, lines):
        assert size in line, line
    # the result lines are all a user sees: no init log, no warnings
    assert proc.stdout.splitlines() == ['random weights'] + [
        line for line in proc.stdout.splitlines() if line.startswith('wrote ')
    ] + lines, proc.stdout[-2000:]
    assert proc.stderr == '', proc.stderr[-2000:]


def test_cli_verbose_shows_the_library_log(tmp_path):
    out = str(tmp_path / 'demo.onnx')
    command = ['export_onnx.py', DEMO_CONFIG, 'none', out, '--shape', '32']
    quiet = run_tool(*command)
    verbose = run_tool(*command, '--verbose')
    assert quiet.returncode == verbose.returncode == 0, verbose.stderr[-2000:]
    assert len(quiet.stdout.splitlines()) == 3, quiet.stdout
    assert 'init_weights' not in quiet.stdout + quiet.stderr
    assert 'init_weights' in verbose.stdout
    results = [
        line for line in verbose.stdout.splitlines()
        if line.startswith(('random weights', 'wrote ', 'onnxruntime'))
    ]
    assert len(results) == 3 and results[-1].endswith(' ok'), verbose.stdout


def test_cli_refuses_a_slide_config_before_tracing(tmp_path):
    out = tmp_path / 'demo.onnx'
    proc = run_tool('export_onnx.py', DEMO_CONFIG, 'none', str(out), '--shape',
                    '64', '--cfg-options', 'model.test_cfg.mode=slide',
                    'model.test_cfg.crop_size=(64,64)',
                    'model.test_cfg.stride=(48,48)')
    assert proc.returncode != 0
    assert "model.test_cfg.mode='slide'" in proc.stderr
    assert 'random weights' not in proc.stdout and not out.exists()


def test_backbones_that_cannot_export_dynamically_are_refused(tmp_path):
    """Swin pads its windows by amounts computed in Python: a dynamic graph
    would be off at other sizes, so it is refused by name before tracing; one
    size per file works."""
    from mmengine.config import Config
    from test_configs.test_atm_head_swap import _tiny as tiny_drop_in
    cfg = Config.fromfile(
        osp.join(
            REPO, 'configs', 'segvit', 'atm_head_swap',
            'atm_swin-tiny-patch4-window7-in1k-pre_8xb2-160k_ade20k-512x512.py'
        ))
    model_cfg = tiny_drop_in(cfg)
    model_cfg.test_cfg = dict(mode='whole')
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.eval()
    path = tmp_path / 'swin.onnx'
    with pytest.raises(
            ValueError,
            match='--dynamic is refused for a SwinTransformer '
            'backbone: it pads its windows'):
        export_onnx(model, str(path), (64, 64), dynamic=True)
    assert not path.exists()
    wrapper = export_onnx(model, str(path), (64, 64))
    _assert_close(check_onnx(str(path), wrapper, [(1, 64, 64)]))


def test_a_dynamic_export_the_exporter_fixed_is_refused(tmp_path):
    """torch.export may specialise an axis asked to be dynamic (a size the
    model's Python code compares with a constant): the graph then takes the
    traced size only, so the export is refused by name instead of failing
    inside onnxruntime at the check's other sizes."""
    import onnx
    from onnx import TensorProto, helper

    from mmseg_segvit.deploy.onnx import check_dynamic_inputs

    def write(dims):
        inputs = helper.make_tensor_value_info('inputs', TensorProto.FLOAT,
                                               dims)
        out = helper.make_tensor_value_info('scores', TensorProto.FLOAT, dims)
        graph = helper.make_graph(
            [helper.make_node('Identity', ['inputs'], ['scores'])], 'g',
            [inputs], [out])
        path = str(tmp_path / f'{len(str(dims))}.onnx')
        onnx.save(helper.make_model(graph), path)
        return path

    check_dynamic_inputs(write(['batch', 3, 'height', 'width']), 'dynamo')
    with pytest.raises(
            ValueError,
            match=r"fixed the input size .*"
            r"'height': 136.*without --dynamic"):
        check_dynamic_inputs(write(['batch', 3, 136, 'width']), 'dynamo')
