"""What the benchmark scripts share (benchmarks/common.py): the models they
build, the fake batch, the training step and the timing."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseDataPreprocessor

from benchmarks import common


def test_build_model_gives_the_spec_at_the_crop_without_preprocessing():
    model = common.build_model(common.SPECS['segvit-b'], 64, tiny=True)
    # the benchmarks feed normalised images: mmengine's pass-through
    # preprocessor, not the config's SegDataPreProcessor
    assert type(model.data_preprocessor) is BaseDataPreprocessor
    assert model.backbone.img_size == (64, 64)
    assert model.backbone.pos_embed.shape == (1, 1 + 4 * 4, 64)  # 64/16
    assert model.backbone.init_cfg is None  # random weights, no download
    assert len(model.backbone.layers) == common.TINY_LAYERS
    assert all(p.device.type == 'cpu' for p in model.parameters())


def test_build_model_replaces_sync_bn_and_the_head_of_a_spec():
    upernet = common.build_model(common.SPECS['upernet-b'], 64, tiny=True)
    norms = {
        type(m)
        for m in upernet.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }
    assert norms == {nn.BatchNorm2d}  # SyncBN needs a process group
    spec = common.SPECS['segvit-b-crop-masks']
    model = common.build_model(spec, 64, tiny=True)
    assert type(model.decode_head) is common.CropMasksATMHead
    assert model.decode_head.crop_size == (512, 512)


def test_fake_batch_and_train_step_drive_a_spec_model():
    model = common.build_model(common.SPECS['segvit-b'], 64, tiny=True)
    num_classes = model.decode_head.num_classes
    images, metas, samples = common.fake_batch(2, 64, num_classes,
                                               torch.device('cpu'))
    assert images.shape == (2, 3, 64, 64)
    assert metas[0]['img_shape'] == (64, 64)
    labels = torch.stack([s.gt_sem_seg.data for s in samples])
    assert labels.shape == (2, 1, 64, 64)
    assert 1 < labels[0].unique().numel() <= 12  # a few classes per image
    assert int(labels.max()) < num_classes
    # the same batch every call (seeded), so rows compare like with like
    again, _, _ = common.fake_batch(2, 64, num_classes, torch.device('cpu'))
    assert torch.equal(images, again)

    model.train()
    optimizer = common.make_optimizer(model)
    weights = [p.detach().clone() for p in model.parameters()]
    common.train_step(model, images, samples, torch.device('cpu'), 'fp32',
                      optimizer)()
    assert any(
        not torch.equal(w, p)
        for w, p in zip(weights, model.parameters()))  # the optimizer stepped
    assert all(p.grad is None for p in model.parameters())  # freed


def test_calls_per_block_gives_twenty_calls_or_one_second():
    assert common.calls_per_block(0.001, 20, 1.0) == 20
    assert common.calls_per_block(0.2, 20, 1.0) == 5
    assert common.calls_per_block(3.0, 20, 1.0) == 1
    assert common.calls_per_block(0.0, 20, 1.0) == 20
    assert common.calls_per_block(0.5, 1, 0.0) == 1


def test_time_block_times_a_block_of_calls():
    calls = []
    seconds = common.time_block(
        lambda: calls.append(1),
        torch.device('cpu'),
        min_calls=5,
        min_seconds=10.0)
    assert len(calls) == 1 + 5  # one call sizes the block, five are timed
    assert seconds >= 0


def test_autocast_follows_the_dtype():
    cpu = torch.device('cpu')
    with common.autocast(cpu, 'fp32'):
        assert not torch.is_autocast_cpu_enabled()
    with common.autocast(cpu, 'bf16'):
        assert torch.is_autocast_cpu_enabled()
        assert torch.get_autocast_cpu_dtype() == torch.bfloat16
    with pytest.raises(KeyError):
        common.autocast(cpu, 'fp8')


def test_tiny_model_cfg_keeps_the_structure_at_small_sizes():

    def tiny(key):
        cfg = Config.fromfile(common.resolve_config(common.SPECS[key])).model
        common.tiny_model_cfg(cfg)
        assert cfg.backbone.num_layers == common.TINY_LAYERS
        assert cfg.backbone.embed_dims == common.TINY_DIMS
        return cfg

    vit_b = tiny('segvit-b')
    assert list(vit_b.backbone.out_indices) == [0, 1, 3]  # of [5, 7, 11]
    head = vit_b.decode_head
    assert (head.in_channels, head.embed_dims, head.num_heads) == (64, 32, 2)
    shrunk = tiny('segvit-shrunk-l')
    assert list(shrunk.backbone.out_indices) == [0, 3]  # of [7, 23]
    assert shrunk.backbone.qd_index == 1  # QD after the first output
    assert shrunk.backbone.qu_cfg.embed_dims == 32  # half the width, as 512
    assert shrunk.decode_head.in_channels == 32
    upernet = tiny('upernet-b')
    assert list(upernet.backbone.out_indices) == [0, 1, 2, 3]
    assert list(upernet.neck.in_channels) == [64] * 4
    assert upernet.neck.out_channels == 64
    assert list(upernet.decode_head.in_channels) == [64] * 4
