"""TimmViT: timm's foundation ViTs as SegViT backbones."""
import pytest
import torch
from fixtures import (data_samples, run_tool, timm_demo_config,
                      tiny_timm_segmentor)

from mmseg_segvit.models.backbones import TimmViT
from mmseg_segvit.models.backbones.timm_vit import (center_pad,
                                                    center_pad_amounts)
from mmseg_segvit.pos_table import (DINOV2_RULE, TIMM_RULE, pos_table_rule,
                                    resize_pos_table)

TINY = dict(embed_dim=32, depth=4, num_heads=2)
FAMILIES = {
    'dinov2': 'vit_small_patch14_dinov2',
    'dinov2_reg4': 'vit_small_patch14_reg4_dinov2',
    'dinov3': 'vit_small_patch16_dinov3_qkvb',
    'beitv2': 'beitv2_base_patch16_224',
    'eva02': 'eva02_small_patch14_224',
}


def tiny(name: str, **kwargs) -> TimmViT:
    kwargs.setdefault('img_size', (64, 64))
    kwargs.setdefault('out_indices', (1, 3))
    return TimmViT(name, model_kwargs=dict(TINY), **kwargs)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_maps_and_grids(family):
    """One (B, C, ceil(H / p), ceil(W / p)) map per out index; no class or
    register token reaches it (the map has exactly the patch count)."""
    backbone = tiny(FAMILIES[family])
    p = backbone.patch_size
    out = backbone(torch.randn(2, 3, 64, 64))
    grid = (-(-64 // p), ) * 2
    assert [tuple(o.shape) for o in out] == [(2, 32, *grid)] * 2
    assert backbone.grid == grid
    if backbone.dynamic_size:  # non-square, off the patch: padded
        out = backbone(torch.randn(1, 3, 40, 90))
        assert tuple(out[0].shape[-2:]) == (-(-40 // p), -(-90 // p))


def test_parameter_names_and_pruning():
    """timm's names under ``vit.``; blocks after the last out index, the final
    norm and the classifier are gone (they get no gradient)."""
    backbone = tiny(FAMILIES['dinov2_reg4'], out_indices=(0, 2))
    names = set(backbone.state_dict())
    assert {
        'vit.cls_token', 'vit.reg_token', 'vit.pos_embed',
        'vit.patch_embed.proj.weight'
    } <= names
    assert len(backbone.vit.blocks) == 3 and backbone.num_blocks == 4
    assert not any(
        k.startswith(('vit.norm.', 'vit.head.', 'vit.fc_norm.'))
        for k in names)


def test_out_index_is_the_block_output():
    """The map of out index i is block i's output (timm's blocks run by hand),
    prefix tokens removed."""
    backbone = tiny(FAMILIES['dinov2_reg4'], out_indices=(1, ))
    vit = backbone.vit
    x = torch.randn(1, 3, 56, 56)
    tokens = vit._pos_embed(vit.patch_embed(x))
    for blk in vit.blocks[:2]:
        tokens = blk(tokens)
    want = tokens[:, vit.num_prefix_tokens:].transpose(1,
                                                       2).reshape(1, 32, 4, 4)
    torch.testing.assert_close(backbone(x)[0], want)


def test_default_and_negative_out_indices():
    assert tiny(FAMILIES['dinov2'], out_indices=None).out_indices == (0, 1, 3)
    assert tiny(FAMILIES['dinov2'], out_indices=(-3, -1)).out_indices == (1, 3)


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_indices=(3, 1)), 'increasing block indices'),
    (dict(out_indices=(4, )), 'increasing block indices'),
    (dict(out_indices=('1', 3)), r"list of block indices \(ints\).*'1'"),
    (dict(out_indices=3), r'list of block indices \(ints\).*got 3'),
    (dict(model_kwargs=dict(TINY, pretrained=True)), 'must not set'),
])
def test_bad_arguments(kwargs, match):
    args = dict(img_size=64, out_indices=(1, 3), model_kwargs=dict(TINY))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TimmViT(FAMILIES['dinov2'], **args)


def test_unknown_model_name():
    with pytest.raises(ValueError, match='has no model'):
        TimmViT('vit_nonexistent_patch14_dinov9')
    # a typo is answered with the names it was meant to be
    with pytest.raises(
            ValueError,
            match=r"'vit_large_patch14_dinov'.*"
            r"'vit_large_patch14_dinov2'"):
        TimmViT('vit_large_patch14_dinov')
    with pytest.raises(ValueError, match="plain ViTs.*resnet"):
        TimmViT('resnet18')


def test_center_padding_as_official():
    """DINOv2's ``CenterPadding``: pad // 2 before, the rest after."""
    assert center_pad_amounts(512, 14) == (3, 3)
    assert center_pad_amounts(513, 14) == (2, 3)
    assert center_pad_amounts(518, 14) == (0, 0)
    img = torch.ones(1, 1, 5, 6)
    out = center_pad(img, 4)
    assert out.shape == (1, 1, 8, 8)
    assert out[0, 0, 1:6, 1:7].eq(1).all() and out.sum() == 30


def test_fixed_window_model_refuses_other_sizes():
    backbone = tiny(FAMILIES['beitv2'])
    with pytest.raises(ValueError, match='slide'):
        backbone(torch.randn(1, 3, 64, 96))


def test_pos_table_rules():
    assert pos_table_rule('vit_large_patch14_dinov2') == DINOV2_RULE
    assert pos_table_rule('vit_large_patch14_dinov2.lvd142m') == DINOV2_RULE
    assert pos_table_rule('vit_large_patch14_reg4_dinov2') == TIMM_RULE
    assert pos_table_rule('eva02_large_patch14_448') == TIMM_RULE
    table = torch.randn(1, 1 + 16, 8)
    same = resize_pos_table(table, (4, 4), (4, 4), 1, DINOV2_RULE)
    assert same is table
    big = resize_pos_table(table, (4, 4), (6, 5), 1, DINOV2_RULE)
    assert big.shape == (1, 31, 8) and torch.equal(big[:, :1], table[:, :1])
    # the official offset samples elsewhere than timm's size rule
    timm_big = resize_pos_table(table, (4, 4), (6, 5), 1, TIMM_RULE)
    assert (big - timm_big).abs().max() > 1e-3
    with pytest.raises(ValueError, match='prefix entries'):
        resize_pos_table(table, (4, 5), (6, 5), 1)


def test_dinov2_runtime_resize_follows_official_rule():
    """At an input grid other than the table's, the table is resized by the
    official DINOv2 rule (not timm's)."""
    backbone = tiny(FAMILIES['dinov2'], img_size=56)  # 4x4 table
    vit = backbone.vit
    x = vit.patch_embed(torch.randn(1, 3, 84, 70))  # 6x5 grid
    tokens = vit._pos_embed(x)
    table = resize_pos_table(vit.pos_embed, (4, 4), (6, 5), 1, DINOV2_RULE)
    want = torch.cat((vit.cls_token, x.flatten(1, 2)), 1) + table
    torch.testing.assert_close(tokens, want)


def test_with_cp_same_values_and_gradients():
    torch.manual_seed(0)
    plain = tiny(FAMILIES['dinov3'])
    cp = tiny(FAMILIES['dinov3'], with_cp=True)
    cp.load_state_dict(plain.state_dict())
    assert cp.vit.grad_checkpointing
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for model in (plain, cp):
        model.eval()
        y = model(x)
        sum(o.square().sum() for o in y).backward()
        outs.append((y, model.vit.patch_embed.proj.weight.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


def test_fused_attn_switch_same_values():
    torch.manual_seed(0)
    fused = tiny(FAMILIES['eva02'])
    plain = tiny(FAMILIES['eva02'], fused_attn=False)
    plain.load_state_dict(fused.state_dict())
    switches = [
        m.fused_attn for m in plain.vit.modules() if hasattr(m, 'fused_attn')
    ]
    assert switches and not any(switches)
    x = torch.randn(1, 3, 64, 64)
    fused.eval(), plain.eval()
    torch.testing.assert_close(fused(x), plain(x), atol=1e-5, rtol=1e-5)


def test_drop_path_rate_reaches_blocks():
    backbone = tiny(FAMILIES['dinov2'], drop_path_rate=0.3)
    rates = [
        blk.drop_path1.drop_prob
        if hasattr(blk.drop_path1, 'drop_prob') else 0.
        for blk in backbone.vit.blocks
    ]
    assert rates[0] == 0. and rates[-1] == pytest.approx(0.3)


@pytest.mark.parametrize('paramwise', [None, dict(norm_decay_mult=0.0)])
def test_frozen_backbone(paramwise):
    """No gradient, eval mode across train(), unchanged by a training step of
    the segmentor (AdamW with weight decay); no optimizer state.

    mmengine's default constructor hands the frozen weights to the
    optimizer without paramwise_cfg (torch skips weights without a
    gradient: no state, no decay) and leaves them out with one.
    """
    from mmengine.optim import build_optim_wrapper
    model = tiny_timm_segmentor(
        FAMILIES['dinov3'], (64, 64),
        depth=TINY['depth'],
        out_indices=(1, 2, 3),
        dropout=0.1,
        frozen=True,
        drop_path_rate=0.2)
    model.train()
    assert not model.backbone.vit.training and model.decode_head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optim = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.5))
    if paramwise:
        optim['paramwise_cfg'] = paramwise
    wrapper = build_optim_wrapper(model, optim)
    frozen_ids = {id(p) for p in model.backbone.parameters()}
    grouped = {
        id(p)
        for g in wrapper.optimizer.param_groups for p in g['params']
    }
    assert (frozen_ids <= grouped) == (paramwise is None)
    assert paramwise is None or not frozen_ids & grouped
    labels = torch.randint(0, 3, (2, 64, 64))
    data = model.data_preprocessor(
        dict(
            inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
            data_samples=data_samples(labels)), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    wrapper.update_params(loss)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    state = wrapper.optimizer.state
    assert state and not any(id(p) in frozen_ids for p in state)
    # a frozen backbone's forward is deterministic in train mode
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.backbone(x), model.backbone(x))


def test_in_segmentor_loss_and_predict():
    """TimmViT + ATMHead: a training step and whole inference at a size off the
    patch (DINOv2, 14 at 60x74)."""
    model = tiny_timm_segmentor(
        FAMILIES['dinov2_reg4'], (56, 56),
        depth=TINY['depth'],
        out_indices=(1, 2, 3),
        dropout=0.1)
    labels = torch.randint(0, 3, (2, 56, 56))
    data = model.data_preprocessor(
        dict(
            inputs=[torch.randint(0, 255, (3, 56, 56), dtype=torch.uint8)] * 2,
            data_samples=data_samples(labels)), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    assert model.backbone.vit.blocks[0].attn.qkv.weight.grad is not None
    model.eval()
    data = model.data_preprocessor(
        dict(
            inputs=[torch.randint(0, 255, (3, 60, 74), dtype=torch.uint8)],
            data_samples=data_samples(torch.zeros(1, 60, 74).long())))
    with torch.no_grad():
        pred = model.predict(data['inputs'], data['data_samples'])[0]
    assert pred.pred_sem_seg.data.shape == (1, 60, 74)


def _segmentor(name, size, depth=3):
    torch.manual_seed(0)
    return tiny_timm_segmentor(name, size, depth).eval()


@pytest.mark.parametrize(
    'name, size',
    [
        (FAMILIES['dinov3'], (48, 80)),  # RoPE on a non-square grid
        (FAMILIES['dinov2'], (70, 84)),  # the official table resize in graph
    ])
def test_compile_traces_as_one_graph(name, size):
    model = _segmentor(name, (56, 56) if 'dinov2' in name else (64, 64))
    metas = [dict(img_shape=size, pad_shape=size, ori_shape=size)]
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        explained = torch._dynamo.explain(model.encode_decode)(x, metas)
    assert explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.slow
def test_inductor_equals_eager_with_rope():
    torch._dynamo.reset()
    model = _segmentor(FAMILIES['dinov3'], (64, 64))
    x = torch.randn(1, 3, 48, 80)
    metas = [dict(img_shape=(48, 80), pad_shape=(48, 80))]
    with torch.no_grad():
        eager = model.encode_decode(x, metas)
        out = torch.compile(model.encode_decode, backend='inductor')(x, metas)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)


def test_flops_of_the_backbone():
    """FLOP count of a tiny DINOv3 (fvcore convention: 1 multiply-add per
    product, 5 per normalised element) equals the count by hand: the fused
    attention is counted, pruned blocks are not."""
    from mmseg_segvit.utils import count_flops, flops_summary
    model = _segmentor(FAMILIES['dinov3'], (64, 64), depth=4)  # 3 kept
    rows = dict(flops_summary(model, count_flops(model, (64, 64))))
    n, c, hidden = 16 + 5, 32, 128  # patches + class + 4 registers
    block = (
        n * c * 3 * c + n * c * c + 2 * n * c * hidden  # linears
        + 2 * n * n * c  # q k^T and attn v over 2 heads of 16
        + 2 * 5 * n * c)  # two LayerNorms
    patch_embed = 16 * (3 * 16 * 16) * c
    assert rows['backbone'] == patch_embed + 3 * block


def test_get_flops_tool_on_a_timm_config(tmp_path):
    proc = run_tool('get_flops.py',
                    timm_demo_config(tmp_path, 'vit_small_patch14_dinov2'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith('backbone') for line in lines)
    assert float(lines[-1].split()[-1]) > 0


def test_dinov3_rope_rescale_in_training_as_official():
    """The official DINOv3 models rescale the RoPE coordinates at random in
    training mode (factor in [1/2, 2]); eval mode is deterministic; the
    augmentation can be turned off."""
    torch.manual_seed(0)
    from official_dinov2_reference import randomise
    backbone = tiny(FAMILIES['dinov3'])
    randomise(backbone.vit)  # layer scales of 1e-5 would hide the blocks
    assert backbone.vit.rope.rescale_coords == 2.0
    x = torch.randn(1, 3, 64, 64)
    backbone.train()
    assert not torch.allclose(backbone(x)[1], backbone(x)[1])
    backbone.eval()
    torch.testing.assert_close(backbone(x), backbone(x))
    off = TimmViT(
        FAMILIES['dinov3'],
        img_size=64,
        out_indices=(1, 3),
        model_kwargs=dict(TINY, rope_rescale_coords=None)).train()
    off.load_state_dict(backbone.state_dict())
    torch.testing.assert_close(off(x), off(x))


def test_init_weights_without_file_keeps_timms_initialisation():
    """No init_cfg: timm's initialisation stands (init_weights does not draw
    again); DINOv3's RoPE periods are saved, rounded to bfloat16 as in the
    official files."""
    backbone = tiny(FAMILIES['dinov3'])
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.init_weights()
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    periods = after['vit.rope.periods']
    schedule = backbone.vit.rope._compute_periods()
    assert torch.equal(periods, schedule.bfloat16().float())
    assert not torch.equal(periods, schedule)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_weight_gets_a_gradient(family):
    """No unused parameter (DDP without find_unused_parameters): the pruned
    model uses every weight it keeps."""
    backbone = tiny(FAMILIES[family], out_indices=(1, 2))
    backbone.train()
    sum(o.sum() for o in backbone(torch.randn(1, 3, 64, 64))).backward()
    unused = [
        n for n, p in backbone.named_parameters()
        if p.requires_grad and p.grad is None
    ]
    assert not unused


def test_segmentor_checkpoint_must_carry_the_backbone():
    """load_from / init_model of a whole-model checkpoint: a missing, extra or
    misshaped backbone tensor is an error, not random weights."""
    model = _segmentor(FAMILIES['dinov2_reg4'], (56, 56))
    full = model.state_dict()
    model.load_state_dict(full)  # a complete checkpoint loads
    partial = {
        k: v
        for k, v in full.items() if not k.startswith('backbone.vit.blocks.1.')
    }
    with pytest.raises(ValueError, match=r'lacks .*blocks\.1'):
        model.load_state_dict(partial, strict=False)
    extra = dict(full,
                 **{'backbone.vit.blocks.7.norm1.weight': torch.ones(32)})
    with pytest.raises(ValueError, match='blocks.7.norm1.weight'):
        model.load_state_dict(extra, strict=False)
    shaped = dict(full, **{'backbone.vit.pos_embed': torch.zeros(1, 21, 31)})
    with pytest.raises(ValueError, match='other shapes.*pos_embed'):
        model.load_state_dict(shaped, strict=False)
    # a table of unknown grid: the error says how to load it
    unknown = dict(full, **{'backbone.vit.pos_embed': torch.zeros(1, 9, 32)})
    with pytest.raises(ValueError, match="prefix='backbone.', src_grid="):
        model.load_state_dict(unknown, strict=False)


@pytest.mark.parametrize(
    'family, crops',
    [
        ('dinov2', ((56, 56), (84, 70))),  # the official DINOv2 rule
        ('dinov2_reg4', ((56, 56), (98, 42))),  # register rows kept
        ('eva02', ((56, 56), (70, 70))),  # table + rotary embedding
    ])
def test_segmentor_checkpoint_of_another_crop(tmp_path, family, crops):
    """load_from / init_model of a checkpoint trained at another crop:

    the table is resized from the grid the checkpoint recorded (by the model's
    rule), every other tensor is loaded as it is.
    """
    from mmengine.runner import load_checkpoint, save_checkpoint
    first = _segmentor(FAMILIES[family], crops[0])
    with torch.no_grad():
        first.backbone.vit.pos_embed.normal_()
    path = tmp_path / 'iter_1.pth'
    save_checkpoint(first.state_dict(), str(path))
    second = _segmentor(FAMILIES[family], crops[1])
    load_checkpoint(second, str(path), strict=True)
    src = first.backbone
    table = src.vit.pos_embed
    prefix = table.shape[1] - src.grid[0] * src.grid[1]
    want = resize_pos_table(table, src.grid, second.backbone.grid, prefix,
                            pos_table_rule(FAMILIES[family]))
    assert torch.equal(second.backbone.vit.pos_embed, want)
    assert second.backbone.vit.pos_embed.shape[1] == \
        prefix + second.backbone.grid[0] * second.backbone.grid[1]
    for key, value in first.state_dict().items():
        if key != 'backbone.vit.pos_embed':
            assert torch.equal(second.state_dict()[key], value), key
