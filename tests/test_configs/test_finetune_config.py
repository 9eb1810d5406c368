"""The fine-tuning example: an ADE20K model on a 5-class custom dataset.

The real config is loaded; the model is shrunk, the data are a few generated
images in the documented layout, and the ADE20K checkpoint is a tiny 150-class
model saved here. mmengine's Runner loads it with ``load_from``, trains two
iterations and validates.
"""
import os
import os.path as osp

import cv2
import numpy as np
import torch
from fixtures import (FINETUNE_CONFIG, FINETUNE_SIZE, make_finetune_model_tiny,
                      meta_head)
from mmengine.config import Config
from mmengine.runner import Runner, save_checkpoint
from mmseg.registry import MODELS

from mmseg_segvit.tools.drop_class_weights import drop_class_weights


def _write_dataset(root):
    rng = np.random.default_rng(0)
    for split, count in (('train', 4), ('val', 2)):
        os.makedirs(osp.join(root, 'img_dir', split))
        os.makedirs(osp.join(root, 'ann_dir', split))
        for i in range(count):
            label = np.zeros((FINETUNE_SIZE, FINETUNE_SIZE), np.uint8)
            for c in range(1, 5):
                y, x = rng.integers(0, FINETUNE_SIZE - 16, 2)
                label[y:y + 16, x:x + 16] = c
            label[:2] = 255
            img = (label[..., None] * 40 +
                   rng.integers(0, 30,
                                (FINETUNE_SIZE, FINETUNE_SIZE, 3))).astype(
                                    np.uint8)
            cv2.imwrite(osp.join(root, 'img_dir', split, f'{i}.jpg'), img)
            cv2.imwrite(osp.join(root, 'ann_dir', split, f'{i}.png'), label)


def test_config_fits_a_five_class_dataset():
    cfg = Config.fromfile(FINETUNE_CONFIG)
    head = cfg.model.decode_head
    assert head.num_classes == meta_head(head).q.num_embeddings == 5
    assert len(cfg.metainfo['classes']) == len(cfg.metainfo['palette']) == 5
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        dataset = loader.dataset
        assert dataset.type == 'CheckedSegDataset'
        assert dataset.reduce_zero_label is False
        assert dataset.metainfo == cfg.metainfo
        load = [t for t in dataset.pipeline if t.type == 'LoadAnnotations']
        assert load == [dict(type='LoadAnnotations')]
    assert cfg.load_from == ('checkpoints/segvit_vit-b16_ade20k_51.3_'
                             'no-class-weights.pth')
    assert cfg.model.pretrained is None
    assert cfg.param_scheduler[-1].end == cfg.train_cfg.max_iters == 20000


def test_tta_keeps_label_zero(tmp_path):
    """``--tta`` reads labels as the train and test pipelines do: class 0
    (background) stays 0, not ADE20K's "reduce zero label" ignore."""
    from mmcv.transforms import Compose
    _write_dataset(str(tmp_path))
    cfg = Config.fromfile(FINETUNE_CONFIG)
    tta = Compose(cfg.tta_pipeline)
    out = tta(
        dict(
            img_path=str(tmp_path / 'img_dir/val/0.jpg'),
            seg_map_path=str(tmp_path / 'ann_dir/val/0.png'),
            reduce_zero_label=False,
            seg_fields=[]))
    label = cv2.imread(
        str(tmp_path / 'ann_dir/val/0.png'), cv2.IMREAD_UNCHANGED)
    assert len(out['data_samples']) == 12  # 6 scales x 2 flips
    for sample in out['data_samples']:
        gt = sample.gt_sem_seg.data[0].numpy()
        assert gt.shape == label.shape
        assert set(np.unique(gt)) == set(np.unique(label))


def test_fine_tune_from_a_150_class_checkpoint(tmp_path):
    root = str(tmp_path / 'my_dataset')
    _write_dataset(root)
    cfg = Config.fromfile(FINETUNE_CONFIG)
    make_finetune_model_tiny(cfg.model)

    # The "ADE20K" checkpoint: the same network with 150 classes.
    source_cfg = cfg.model.copy()
    source_cfg.decode_head = dict(
        cfg.model.decode_head,
        num_classes=150,
        loss_decode=dict(type='ATMLoss'))
    source = MODELS.build(source_cfg)
    source.init_weights()
    ckpt = str(tmp_path / 'ade20k.pth')
    # As documented: drop the class-specific tensors before fine-tuning
    # (loading them into a 5-class model is an error that says so).
    weights, dropped = drop_class_weights(source.state_dict())
    assert sorted(dropped) == [
        'decode_head.class_embed.bias', 'decode_head.class_embed.weight',
        'decode_head.q.weight'
    ]
    save_checkpoint(dict(state_dict=weights, meta={}), ckpt)

    cfg.load_from = ckpt
    cfg.work_dir = str(tmp_path / 'work')
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = root
    cfg.train_dataloader.batch_size = 2
    size = (FINETUNE_SIZE, FINETUNE_SIZE)
    cfg.train_dataloader.dataset.pipeline[2].scale = size
    cfg.train_dataloader.dataset.pipeline[3].crop_size = size
    cfg.val_dataloader.dataset.pipeline[1].scale = size
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    runner.load_or_resume()
    model = runner.model
    # backbone and decoders come from the checkpoint, class queries not
    # (the runner moves the model to CUDA where there is one)
    torch.testing.assert_close(
        model.backbone.patch_embed.projection.weight.cpu(),
        source.backbone.patch_embed.projection.weight)
    decoder = {
        k: v.cpu()
        for k, v in model.decode_head.decoders[0].state_dict().items()
    }
    torch.testing.assert_close(decoder,
                               source.decode_head.decoders[0].state_dict())
    assert model.decode_head.q.weight.shape == (5, 32)
    assert model.decode_head.class_embed.weight.shape == (6, 32)
    runner.train()
    metrics = runner.val_loop.run()
    assert 0 <= metrics['mIoU'] <= 100
    assert runner.val_evaluator.dataset_meta['classes'][1] == 'road'
