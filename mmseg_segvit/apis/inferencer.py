"""``MMSegInferencer`` whose outputs are named after their inputs and whose
batches may hold images of several sizes.

MMSeg's inferencer numbers the label PNGs it writes (``pred/00000000_
pred.png``, ...) in the order it was given the files, which for a folder is
the order the file system lists them, and stops with "The image size in a
batch should be the same" when ``batch_size > 1`` meets images of mixed
sizes; it also names the classes of a checkpoint without class names after
Cityscapes. :class:`SegViTInferencer` takes the same arguments and:

- writes ``pred/<image stem>.png`` for each image file (MMSeg's numbered
  name for arrays, which have no file name; 16-bit where a class index
  exceeds 255, which MMSeg's 8-bit files wrap); ``vis/`` keeps MMSeg's
  names (the image's file name);
- runs each batch as sub-batches of equal image size (the prediction of an
  image does not depend on the batch);
- loads every checkpoint layout :func:`~mmseg_segvit.apis.init_model`
  loads, with class names from the config's dataset when the file has none.
"""
import os.path as osp
import warnings
from collections import defaultdict
from typing import Dict, List

import mmengine
import numpy as np
import torch
from mmseg.apis import MMSegInferencer
from PIL import Image

from ..checkpoints import checkpoint_dataset_meta
from .inference import head_num_classes, load_segmentor_weights

__all__ = ['SegViTInferencer']


class SegViTInferencer(MMSegInferencer):
    """``MMSegInferencer`` with outputs named after their inputs, batches of
    mixed image sizes and every checkpoint layout (see module).

    Same arguments and call as ``MMSegInferencer``.
    """

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        if checkpoint is None:
            warnings.warn('no weights given: the predictions come from a '
                          'randomly initialised model')
            num_classes = head_num_classes(model)
            if num_classes is not None:
                model.dataset_meta = checkpoint_dataset_meta(
                    None, cfg, num_classes)[0]
            return
        load_segmentor_weights(model, checkpoint, cfg)

    @torch.no_grad()
    def forward(self, inputs: dict, **kwargs) -> list:
        """``model.test_step`` on sub-batches of equal image size, the
        predictions in the order of ``inputs``."""
        images = inputs['inputs']
        samples = inputs.get('data_samples')
        groups: Dict[tuple, List[int]] = defaultdict(list)
        for i, image in enumerate(images):
            groups[tuple(image.shape)].append(i)
        preds: list = [None] * len(images)
        for indices in groups.values():
            batch = dict(inputs=[images[i] for i in indices])
            if samples is not None:
                batch['data_samples'] = [samples[i] for i in indices]
            for i, pred in zip(indices, self.model.test_step(batch)):
                preds[i] = pred
        return preds

    def postprocess(self,
                    preds,
                    visualization,
                    return_datasample: bool = False,
                    pred_out_dir: str = '') -> dict:
        """MMSeg's results; label PNGs named after their image files."""
        if return_datasample or not pred_out_dir:
            return super().postprocess(preds, visualization, return_datasample,
                                       '')
        results = super().postprocess(preds, visualization, False, '')
        mmengine.mkdir_or_exist(pred_out_dir)
        used = set()
        for i, pred in enumerate(preds):
            if 'pred_sem_seg' not in pred.keys():
                continue
            path = pred.metainfo.get('img_path')
            if path:
                stem = osp.splitext(osp.basename(path))[0]
            else:
                stem = str(self.num_pred_imgs - len(preds) + i).zfill(8) + \
                    '_pred'
            name, n = f'{stem}.png', 1
            while name in used:  # same stem in two folders or suffixes
                name, n = f'{stem}_{n}.png', n + 1
            used.add(name)
            label = pred.pred_sem_seg.data[0].cpu().numpy()
            # 8 bits unless a class index needs more (MMSeg's would wrap)
            label = label.astype(np.uint16 if label.max() > 255 else np.uint8)
            Image.fromarray(label).save(osp.join(pred_out_dir, name))
        return results
