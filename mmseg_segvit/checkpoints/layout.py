"""Which layout a SegViT checkpoint is in: this package's or the official.

The released SegViT files (mmseg 0.24) name the ATM head's modules
``decode_head.input_proj_1``, ``decode_head.decoder_1``, ...
(``decode_head.atm.*`` in the Shrunk models); this package names them
``decode_head.input_projs.0``, ``decode_head.decoders.0``, ... Both have
``decode_head.q`` and ``decode_head.class_embed``, so a tool that only looks at
those would take an official file, and loading its output would leave the head
at random initialisation. The tools that expect this package's layout call
:func:`require_package_layout`.
"""
import re
from typing import Mapping, Optional

from .errors import ConversionError

__all__ = [
    'PACKAGE', 'OFFICIAL', 'OFFICIAL_HEAD_KEY', 'CONVERT_HINT',
    'segvit_layout', 'require_package_layout'
]

#: The layout names :func:`segvit_layout` returns.
PACKAGE, OFFICIAL = 'mmseg_segvit', 'official'

#: Matches the ATM head keys (after ``decode_head.``) of the official files.
OFFICIAL_HEAD_KEY = re.compile(r'(?:input_proj|proj_norm|decoder)_\d+\.|atm\.'
                               r'|loss_decode\.criterion\.')
_PACKAGE_HEAD = re.compile(r'decoders\.\d+\.')

CONVERT_HINT = ('convert it first: `python tools/convert_official_segvit.py '
                'SRC DST` (or `python -m '
                'mmseg_segvit.tools.convert_official_segvit SRC DST`), then '
                'use DST')


def segvit_layout(state_dict: Mapping,
                  head_prefix: str = 'decode_head.') -> Optional[str]:
    """The layout of a segmentor state dict's ATM head.

    Returns:
        str | None: :data:`OFFICIAL` (mmseg 0.24 names), :data:`PACKAGE`
        (this package's names) or None (no ATM head found).
    """
    head = [
        k[len(head_prefix):] for k in state_dict if k.startswith(head_prefix)
    ]
    if any(OFFICIAL_HEAD_KEY.match(k) for k in head):
        return OFFICIAL
    if any(_PACKAGE_HEAD.match(k) for k in head):
        return PACKAGE
    return None


def require_package_layout(state_dict: Mapping,
                           path: str = '<checkpoint>',
                           head_prefix: str = 'decode_head.') -> None:
    """Refuse a state dict whose ATM head is not in this package's layout.

    Raises:
        ConversionError: An official (unconverted) SegViT file, which names
            the converter to run, or a file without an ATM head.
    """
    layout = segvit_layout(state_dict, head_prefix)
    if layout == OFFICIAL:
        raise ConversionError(
            f'{path} is an official SegViT checkpoint (mmseg 0.24 layout: '
            f'{head_prefix}input_proj_1, {head_prefix}decoder_1, ...), '
            f'which this package\'s models do not read: {CONVERT_HINT}')
    if layout is None:
        raise ConversionError(
            f'{path} has no ATMHead weights under {head_prefix!r} '
            f'({head_prefix}decoders.*): is it a SegViT model of this '
            'package (or another --head-prefix)?')
