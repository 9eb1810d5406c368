"""Prepare a checkpoint for fine-tuning with another number of classes.

``python -m mmseg_segvit.tools.drop_class_weights IN.pth OUT.pth`` writes
the model weights of ``IN.pth`` without ATMHead's class-specific tensors
(the class queries ``decode_head.q.weight`` and the classifier
``decode_head.class_embed.*``). Loading ``OUT.pth`` with ``load_from``
into a model with a new ``num_classes`` then reports those tensors as
missing and trains them from their initialisation; everything else is
reused. Optimizer state and the old dataset's meta data are left out.
"""
import argparse
from typing import Dict, List, Tuple

import torch

import mmseg_segvit  # noqa: F401  (weights_only allow-list)

__all__ = ['CLASS_KEYS', 'drop_class_weights', 'main']

# Tensors of ATMHead whose first dimension is the number of classes.
CLASS_KEYS = ('q.weight', 'class_embed.weight', 'class_embed.bias')


def drop_class_weights(
    state_dict: Dict[str, torch.Tensor],
    head_prefix: str = 'decode_head.'
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Remove the class-specific tensors of the head under ``head_prefix``.

    Args:
        state_dict (dict): Model weights.
        head_prefix (str): Prefix of the ATMHead. Default: 'decode_head.'.

    Returns:
        tuple: The remaining weights and the removed keys.
    """
    drop = {head_prefix + k for k in CLASS_KEYS}
    removed = [k for k in state_dict if k in drop]
    if not removed:
        raise KeyError(f'no class weights ({", ".join(sorted(drop))}) in '
                       'the checkpoint: is it an ATMHead model?')
    kept = {k: v for k, v in state_dict.items() if k not in drop}
    return kept, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint to read')
    parser.add_argument('dst', help='checkpoint to write')
    parser.add_argument(
        '--head-prefix',
        default='decode_head.',
        help='key prefix of the ATMHead (default: decode_head.)')
    args = parser.parse_args()
    ckpt = torch.load(args.src, map_location='cpu', weights_only=True)
    state_dict = ckpt.get('state_dict', ckpt)
    state_dict, removed = drop_class_weights(state_dict, args.head_prefix)
    meta = {
        k: v
        for k, v in ckpt.get('meta', {}).items() if k != 'dataset_meta'
    }
    torch.save(dict(meta=meta, state_dict=state_dict), args.dst)
    print(f'wrote {args.dst} without {", ".join(removed)}')


if __name__ == '__main__':
    main()
