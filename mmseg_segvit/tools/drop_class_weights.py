"""Prepare a checkpoint for fine-tuning with another number of classes.

``python -m mmseg_segvit.tools.drop_class_weights IN.pth OUT.pth`` writes
the model weights of ``IN.pth`` without ATMHead's class-specific tensors
(the class queries ``decode_head.q.weight`` and the classifier
``decode_head.class_embed.*``). Loading ``OUT.pth`` with ``load_from``
into a model with a new ``num_classes`` then reports those tensors as
missing and trains them from their initialisation; everything else is
reused. Optimizer state and the old dataset's meta data are left out.

IN.pth must be in this package's layout: an official SegViT file (mmseg
0.24 names) is refused with the converter to run first, since its head
would not load into this package's ATMHead.
"""
import argparse
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch

import mmseg_segvit  # noqa: F401  (weights_only allow-list)
from mmseg_segvit.checkpoints import (ConversionError, UnsafeCheckpointError,
                                      get_state_dict, load_weights_file,
                                      require_package_layout)
from mmseg_segvit.typing_utils import StateDict

__all__ = ['CLASS_KEYS', 'drop_class_weights', 'main']

# Tensors of ATMHead whose first dimension is the number of classes.
CLASS_KEYS = ('q.weight', 'class_embed.weight', 'class_embed.bias')


def drop_class_weights(
        state_dict: StateDict,
        head_prefix: str = 'decode_head.',
        path: str = '<checkpoint>') -> Tuple[StateDict, List[str]]:
    """Remove the class-specific tensors of the head under ``head_prefix``.

    Args:
        state_dict (dict): Model weights, in this package's layout.
        head_prefix (str): Prefix of the ATMHead. Default: 'decode_head.'.
        path (str): The file, for messages.

    Returns:
        tuple: The remaining weights and the removed keys.

    Raises:
        ConversionError: An official SegViT file that was not converted
            (the message names the converter), or no ATMHead weights.
        KeyError: No class tensors under ``head_prefix``.
    """
    require_package_layout(state_dict, path, head_prefix)
    drop = {head_prefix + k for k in CLASS_KEYS}
    removed = [k for k in state_dict if k in drop]
    if not removed:
        raise KeyError(f'no class weights ({", ".join(sorted(drop))}) in '
                       f'{path}: is it an ATMHead model?')
    kept = OrderedDict((k, v) for k, v in state_dict.items() if k not in drop)
    # the modules' metadata (recorded position grids) stays with the weights
    kept._metadata = getattr(state_dict, '_metadata', OrderedDict())
    return kept, removed


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint to read')
    parser.add_argument('dst', help='checkpoint to write')
    parser.add_argument(
        '--head-prefix',
        default='decode_head.',
        help='key prefix of the ATMHead (default: decode_head.)')
    args = parser.parse_args(argv)
    try:
        ckpt = load_weights_file(args.src)
        state_dict = get_state_dict(ckpt, args.src)
        state_dict, removed = drop_class_weights(state_dict, args.head_prefix,
                                                 args.src)
    except (ConversionError, UnsafeCheckpointError, FileNotFoundError,
            KeyError, TypeError) as err:
        raise SystemExit(f'error: {err}')
    meta = {
        k: v
        for k, v in ckpt.get('meta', {}).items() if k != 'dataset_meta'
    }
    torch.save(dict(meta=meta, state_dict=state_dict), args.dst)
    print(f'wrote {args.dst} without {", ".join(removed)}')


if __name__ == '__main__':
    main()
