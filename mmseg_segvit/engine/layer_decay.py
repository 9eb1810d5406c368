"""Layer-wise learning-rate decay (LLRD) for segmentors on timm plain ViTs.

The fine-tuning recipe of BEiT (Bao et al., ICLR 2022, Sec. 2.6 and
``beit/semantic_segmentation/mmcv_custom/layer_decay_optimizer_constructor.py``
of microsoft/unilm), kept by BEiT-v2, EVA-02 and the DINOv2 / DINOv3
fine-tuning recipes: with ``L`` transformer blocks numbered 1..L, layer
``l`` learns at ``lr * decay ** (L + 1 - l)``, where layer 0 is the patch
embedding with the class / register tokens and the position table, block
``i`` (0-based, timm's ``blocks.i``) is layer ``i + 1`` and every module
outside the backbone (the decode head) is layer ``L + 1`` with the full
learning rate. So the last block learns at ``lr * decay``, the patch
embedding at ``lr * decay ** (L + 1)``.

Which parameters form the stem and which form block ``i`` is timm's own
definition: the model's ``group_matcher()`` (the one timm's
``param_groups_layer_decay`` reads), for its ViT, Eva (EVA-02, DINOv3) and
Beit (BEiT, BEiT-v2) classes alike. By that grouping a final ``norm`` (where
the backbone keeps one) goes with the last block, and what timm does not
group (``fc_norm``, a classifier) is layer ``L + 1``.

Weight decay is off, as in those recipes and timm's ``no_weight_decay()``,
for every 1-D parameter (norm weights and biases, layer scales ``ls1`` /
``ls2`` / ``gamma_1`` / ``gamma_2``, BEiT's ``q_bias`` / ``v_bias``), every
bias, the backbone's ``no_weight_decay()`` names (position table, class
and register tokens, BEiT's relative position bias tables, rotary tables
held as parameters) and mask tokens. Frozen parameters
(``requires_grad=False``, e.g. ``TimmViT(frozen=True)``) get no group, so
the optimizer keeps no state for them.
"""
import fnmatch
from collections import OrderedDict
from typing import Dict, List, Optional, Set, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = [
    'ViTLayerDecayOptimWrapperConstructor', 'find_timm_vit', 'vit_layer_ids'
]

# Parameter names (relative to the timm model) without weight decay that
# timm's ``no_weight_decay()`` does not list for every family.
_NO_DECAY_NAMES = ('mask_token', )


def find_timm_vit(backbone: nn.Module) -> Tuple[str, nn.Module]:
    """The timm ViT / Eva / Beit inside ``backbone`` and its attribute path.

    The first module (``backbone`` itself included) with timm's
    ``group_matcher`` and a ``blocks`` sequence, e.g. ``TimmViT.vit`` or
    MMSeg's ``TIMMBackbone.timm_model``.

    Returns:
        ``(path, module)``; ``path`` is ``''`` for ``backbone`` itself, else
        the dotted name with a trailing dot (``'vit.'``).

    Raises:
        TypeError: If there is no such module.
    """
    for name, module in backbone.named_modules():
        if callable(getattr(module, 'group_matcher', None)) and isinstance(
                getattr(module, 'blocks', None), nn.Module):
            return (name + '.' if name else ''), module
    raise TypeError(
        f'layer-wise lr decay needs a timm plain ViT (ViT, Eva or Beit: a '
        f'module with group_matcher() and blocks) in the backbone; '
        f'{type(backbone).__name__} has none. Use the default optimizer '
        f'constructor (no `constructor` in optim_wrapper) for other '
        f'backbones.')


def vit_layer_ids(vit: nn.Module) -> Tuple[Dict[str, int], int]:
    """Layer id of every parameter of a timm ViT / Eva / Beit.

    Args:
        vit: The timm model (``blocks`` and ``group_matcher()``; the blocks
            may have been pruned after the last used one).

    Returns:
        ``({name: layer id}, L)`` with ``L = len(vit.blocks)``: 0 for the
        stem (patch embedding, tokens, position table, pre-norm), ``i + 1``
        for ``blocks.i`` (and ``L`` for the final ``norm``, which timm
        groups with the last block), ``L + 1`` for what timm leaves
        ungrouped (``fc_norm``, pooling, classifier).

    Raises:
        RuntimeError: If timm's grouping does not put ``blocks.i`` at
            ``i + 1`` (a timm change this recipe has to follow).
    """
    from timm.models import group_parameters
    num_blocks = len(vit.blocks)
    grouped = group_parameters(
        vit, vit.group_matcher(coarse=False), reverse=True)
    ids = {name: min(layer, num_blocks + 1) for name, layer in grouped.items()}
    for name, layer in ids.items():
        if name.startswith('blocks.'):
            block = int(name.split('.')[1])
            if layer != block + 1:
                raise RuntimeError(
                    f"timm's group_matcher puts {name} in layer {layer}, "
                    f'not {block + 1}: layer-wise lr decay cannot tell the '
                    f'blocks of {type(vit).__name__} apart')
    return ids, num_blocks


def _no_decay(name: str, param: nn.Parameter, patterns: Set[str]) -> bool:
    return (param.ndim <= 1 or name.endswith('.bias')
            or any(fnmatch.fnmatchcase(name, p) for p in patterns))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ViTLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer with layer-wise lr decay for a segmentor on a timm ViT.

    ``model.backbone`` must hold a timm ViT / Eva / Beit (``TimmViT``, or
    MMSeg's ``TIMMBackbone`` on such a model); see the module docstring for
    the layer ids and the weight-decay rule. Config::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=3e-5, weight_decay=0.05),
            constructor='ViTLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(
                layer_decay_rate=0.9,
                custom_keys={'decode_head': dict(lr_mult=10.0)}))

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper config (``type``,
            ``optimizer``, ...), as for mmengine's default constructor.
        paramwise_cfg (dict): ``layer_decay_rate`` (float in (0, 1]:
            required; 1 turns the decay off) and optionally ``custom_keys``
            (``{substring: dict(lr_mult=..., decay_mult=...)}``: the longest
            key contained in a parameter's full name multiplies its lr and
            weight decay on top of the layer scale, e.g. the SegViT recipe's
            head lr x10). Nothing else: MMSeg's ``num_layers`` /
            ``decay_rate`` are refused (the depth is read from the model).

    Each parameter group holds one layer and one weight-decay kind
    (``lr``, ``weight_decay``, and for reading ``layer_id``, ``lr_scale``
    and ``param_names``).

    Raises:
        ValueError: If ``layer_decay_rate`` is missing or outside (0, 1],
            or ``paramwise_cfg`` has another key.
        TypeError: When built for a model whose backbone holds no timm
            plain ViT.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - {'layer_decay_rate', 'custom_keys'}
        if unknown:
            raise ValueError(
                f'ViTLayerDecayOptimWrapperConstructor: paramwise_cfg takes '
                f'layer_decay_rate and custom_keys, not {sorted(unknown)} '
                f'(the number of layers is read from the backbone)')
        rate = paramwise_cfg.get('layer_decay_rate')
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(
                'ViTLayerDecayOptimWrapperConstructor: paramwise_cfg.'
                f'layer_decay_rate must be a number in (0, 1], got {rate!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.layer_decay_rate = float(rate)

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   **kwargs) -> None:
        """Append one group per (layer, weight decay, custom key) of ``module``
        (the segmentor) to ``params``."""
        backbone = getattr(module, 'backbone', None)
        if not isinstance(backbone, nn.Module):
            raise TypeError(
                'ViTLayerDecayOptimWrapperConstructor needs a segmentor with '
                f'a backbone; {type(module).__name__} has none')
        path, vit = find_timm_vit(backbone)
        vit_prefix = f'backbone.{path}'
        ids, num_blocks = vit_layer_ids(vit)
        no_decay = set(_NO_DECAY_NAMES)
        if callable(getattr(vit, 'no_weight_decay', None)):
            no_decay |= set(vit.no_weight_decay())
        no_decay = {vit_prefix + n for n in no_decay}
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        keys = sorted(sorted(custom_keys), key=len, reverse=True)

        groups: Dict[tuple, dict] = OrderedDict()
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith(vit_prefix):
                layer = ids[name[len(vit_prefix):]]
            else:
                layer = num_blocks + 1
            scale = self.layer_decay_rate**(num_blocks + 1 - layer)
            decay = 0.0 if _no_decay(name, param, no_decay) else 1.0
            key = next((k for k in keys if k in name), None)
            lr_mult = decay_mult = 1.0
            if key is not None:
                lr_mult = custom_keys[key].get('lr_mult', 1.0)
                decay_mult = custom_keys[key].get('decay_mult', 1.0)
            group_key = (layer, decay > 0, key)
            if group_key not in groups:
                group = dict(
                    params=[],
                    param_names=[],
                    layer_id=layer,
                    lr_scale=scale,
                    lr=self.base_lr * scale * lr_mult)
                if self.base_wd is not None:
                    group['weight_decay'] = self.base_wd * decay * decay_mult
                groups[group_key] = group
            groups[group_key]['params'].append(param)
            groups[group_key]['param_names'].append(name)
        params.extend(groups.values())
        lines = [
            f"  layer {g['layer_id']:>3}  lr {g['lr']:.3e}  weight decay "
            f"{g.get('weight_decay', 0.0):.3g}  {len(g['params'])} tensors"
            for g in groups.values()
        ]
        print_log(
            f'layer-wise lr decay {self.layer_decay_rate} over '
            f'{num_blocks} blocks of backbone.{path.rstrip(".")} '
            f'({len(groups)} groups):\n' + '\n'.join(lines),
            logger='current')
