"""TimmViT's maps equal the official DINOv2 / DINOv3 computation.

Random weights (layer scales, tokens, position table and RoPE periods included)
are saved in the official layout, loaded through the config path
(``init_cfg=dict(type='Pretrained', checkpoint=...)``), and the maps ATMHead
receives are compared with ``get_intermediate_layers(x, n=..., reshape=True,
norm=False)`` of the re-implementations in
tests/official_dinov{2,3}_reference.py (themselves checked against the official
repositories; docs/backbones.md gives the figures).
"""
import pytest
import torch
from mmseg.registry import MODELS
from official_dinov2_reference import RefDinoV2, center_padding, randomise
from official_dinov3_reference import RefDinoV3

TINY = dict(embed_dim=32, depth=4, num_heads=2)
OUT = (1, 3)
# float32 sums over a few blocks of random weights: about 1e-6 of maps of
# mean |x| ~ 5; a wrong table, token or periods gives >= 1e-3
ATOL = 1e-4


def max_diff(ours, want) -> float:
    assert [o.shape for o in ours] == [w.shape for w in want]
    return max((a - b).abs().max().item() for a, b in zip(ours, want))


def backbone(name: str, crop, path) -> torch.nn.Module:
    model = MODELS.build(
        dict(
            type='TimmViT',
            model_name=name,
            img_size=crop,
            out_indices=OUT,
            model_kwargs=dict(TINY),
            init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module', params=[False, True], ids=['plain', 'reg4'])
def dinov2(request, tmp_path_factory):
    ref = RefDinoV2.hub(request.param, img_size=518, **TINY).eval()
    randomise(ref)
    path = tmp_path_factory.mktemp('dinov2') / 'dinov2_pretrain.pth'
    torch.save(ref.state_dict(), path)
    name = ('vit_small_patch14_reg4_dinov2'
            if request.param else 'vit_small_patch14_dinov2')
    return ref, name, path


# pretraining size, the configs' crops (512 is padded to 518), non-square
@pytest.mark.parametrize('crop', [(518, 518), (512, 512), (640, 640),
                                  (518, 742), (512, 700)])
def test_dinov2_equals_official_at_the_crop(dinov2, crop):
    ref, name, path = dinov2
    model = backbone(name, crop, path)
    x = torch.randn(1, 3, *crop)
    with torch.no_grad():
        ours = model(x)
        want = ref.get_intermediate_layers(center_padding(x, 14), OUT)
    assert max_diff(ours, want) < ATOL


def test_dinov2_other_sizes_on_the_pretraining_grid(dinov2):
    """A config on the pretraining grid (512 or 518 crops) equals the official
    model at any input size (the table is resized at run time from the
    pretraining table by the official rule)."""
    ref, name, path = dinov2
    model = backbone(name, (512, 512), path)
    for size in [(448, 600), (700, 350)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert max_diff(
                model(x),
                ref.get_intermediate_layers(center_padding(x, 14), OUT)) < ATOL


def test_timm_rule_would_differ(tmp_path):
    """Resizing DINOv2's table by timm's rule (its checkpoint filter and its
    run-time resize) gives other maps than the official code: the reason
    TimmViT resizes by the official one."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn
    ref = RefDinoV2.hub(False, img_size=518, **TINY).eval()
    randomise(ref)
    vit = timm.create_model(
        'vit_small_patch14_dinov2', img_size=644, num_classes=0,
        **TINY).eval()
    vit.load_state_dict(checkpoint_filter_fn(ref.state_dict(), vit))
    x = torch.randn(1, 3, 644, 644)
    with torch.no_grad():
        timm_maps = vit.forward_intermediates(
            x, indices=list(OUT), norm=False, intermediates_only=True)
        want = ref.get_intermediate_layers(x, OUT)
    assert max_diff(timm_maps, want) > 1e-3


@pytest.fixture(scope='module')
def dinov3(tmp_path_factory):
    ref = RefDinoV3(**TINY).eval()
    randomise(ref)
    # the released files hold periods rounded to bfloat16
    periods = ref.rope_embed.periods
    periods.copy_(periods.bfloat16().float())
    path = tmp_path_factory.mktemp('dinov3') / 'dinov3_pretrain.pth'
    torch.save(ref.state_dict(), path)
    return ref, path


@pytest.mark.parametrize('crop', [(224, 224), (512, 512), (640, 640),
                                  (512, 704), (500, 650)])
def test_dinov3_equals_official(dinov3, crop):
    ref, path = dinov3
    model = backbone('vit_small_patch16_dinov3_qkvb', crop, path)
    x = torch.randn(1, 3, *crop)
    with torch.no_grad():
        ours = model(x)
        want = ref.get_intermediate_layers(center_padding(x, 16), OUT)
    assert max_diff(ours, want) < ATOL
    # RoPE takes any grid: another input size equals too
    y = torch.randn(1, 3, 320, 480)
    with torch.no_grad():
        assert max_diff(model(y), ref.get_intermediate_layers(y, OUT)) < ATOL


def test_dinov3_periods_come_from_the_file(dinov3):
    """timm drops the file's RoPE periods and recomputes them in float32; with
    those the maps differ from the official ones."""
    ref, path = dinov3
    model = backbone('vit_small_patch16_dinov3_qkvb', (224, 224), path)
    torch.testing.assert_close(
        model.vit.rope.periods, ref.rope_embed.periods, rtol=0, atol=0)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = ref.get_intermediate_layers(x, OUT)
        model.vit.rope.periods.copy_(model.vit.rope._compute_periods())
        assert max_diff(model(x), want) > 1e-5
