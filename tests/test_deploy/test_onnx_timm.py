"""ONNX export of SegViT on timm backbones (TimmViT), onnxruntime on CPU."""
import pytest
import torch
from fixtures import (dynamic_export_checks, run_tool, timm_demo_config,
                      tiny_timm_segmentor)

from mmseg_segvit.deploy import (check_onnx, check_shapes, choose_exporter,
                                 export_onnx)

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')


def segmentor(name, size):
    torch.manual_seed(0)
    return tiny_timm_segmentor(name, size).eval()


def assert_close(results):
    for res in results:
        assert res.passed(1e-4, 0.999), res


def test_dinov3_dynamic_rope(tmp_path):
    """RoPE (DINOv3) exports with dynamic sizes (TorchScript) and runs at sizes
    and aspect ratios other than the traced one."""
    model = segmentor('vit_small_patch16_dinov3_qkvb', (64, 64))
    assert choose_exporter(model, True) == 'torchscript'
    path = str(tmp_path / 'dinov3.onnx')
    wrapper = export_onnx(model, path, (64, 64), dynamic=True)
    assert_close(
        check_onnx(path, wrapper, [(1, 64, 64), (2, 48, 96), (1, 112, 32)]))


def test_dinov2_static_and_dynamic_refused(tmp_path):
    """DINOv2 without registers exports at a fixed size (the crop, padded like
    the model pads it: 60 -> 70); a dynamic export is refused with the reason
    (the official table resize is traced as a constant)."""
    model = segmentor('vit_small_patch14_dinov2', (56, 56))
    path = str(tmp_path / 'dinov2.onnx')
    wrapper = export_onnx(model, path, (60, 60))
    assert_close(check_onnx(path, wrapper, [(1, 60, 60)]))
    with pytest.raises(ValueError, match='no dynamic ONNX export.*0.1'):
        export_onnx(model, path, (56, 56), dynamic=True)


def test_beit_dynamic_refused():
    model = segmentor('beitv2_base_patch16_224', (64, 64))
    with pytest.raises(ValueError, match='img_size=.*only'):
        choose_exporter(model, True)
    assert choose_exporter(model, False) == 'torchscript'


def test_antialiased_tables_need_dynamo():
    model = segmentor('vit_small_patch14_reg4_dinov2', (56, 56))
    assert choose_exporter(model, True) == 'dynamo'
    assert choose_exporter(model, False) == 'torchscript'
    with pytest.raises(ValueError, match='needs the dynamo exporter'):
        choose_exporter(model, True, 'torchscript')
    eva = segmentor('eva02_small_patch14_224', (56, 56))
    assert choose_exporter(eva, False) == 'dynamo'


@pytest.mark.slow  # torch.export
@pytest.mark.parametrize(
    'name', ['vit_small_patch14_reg4_dinov2', 'eva02_small_patch14_224'])
def test_dynamic_dynamo_exports_are_dynamic_or_refused(tmp_path, name):
    """torch.export fixes the height of these models' graphs at the traced
    (off-grid) example size: the export is refused by name, never written as a
    dynamic graph that takes one height only."""
    model = segmentor(name, (56, 56))
    path = str(tmp_path / 'model.onnx')
    try:
        wrapper = export_onnx(model, path, (56, 56), dynamic=True)
    except ValueError as err:
        assert 'fixed the input size of a --dynamic export' in str(err)
        assert 'without --dynamic' in str(err)
        return
    assert_close(
        check_onnx(path, wrapper,
                   check_shapes(model, (56, 56), True) + [(1, 84, 42)]))


def test_cli_exports_a_timm_config(tmp_path):
    """tools/export_onnx.py on a config with a TimmViT backbone."""
    cfg = timm_demo_config(tmp_path, 'vit_small_patch16_dinov3_qkvb')
    out = str(tmp_path / 'timm.onnx')
    dynamic_export_checks(
        run_tool('export_onnx.py', cfg, 'none', out, '--shape', '64',
                 '--dynamic'))
