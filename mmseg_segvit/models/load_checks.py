"""Refuse checkpoint loads that would leave part of a model untrained.

mmengine's ``load_from``, ``init_cfg=dict(type='Pretrained')`` and
``mmseg.apis.init_model`` load with ``strict=False``: weights the
checkpoint lacks, has under other names or with other shapes only produce
a log line, and those modules silently keep their random initialisation.
For the parts of SegViT that a checkpoint must carry (the ATM head besides
its class tensors, the Shrunk model's query up-sampling), the load-state
pre-hooks built on :func:`compare_keys` turn that into an error naming the
modules.

The checks apply when the module is loaded as part of a larger model
(a non-empty key prefix, e.g. ``decode_head.``): loading a module on its
own (``head.load_state_dict(sd, strict=False)``, a backbone's
``pretrained`` weights) is an explicit call whose result lists the missing
keys.
"""
from typing import Dict, Iterable, List, Mapping, NamedTuple

from torch import Tensor

__all__ = ['KeyReport', 'compare_keys', 'module_of', 'modules_of']


class KeyReport(NamedTuple):
    """How a checkpoint fits a module (names relative to the module).

    Attributes:
        present (list[str]): The module's keys found in the checkpoint.
        missing (list[str]): The module's keys the checkpoint lacks.
        unexpected (list[str]): Checkpoint keys under the module's prefix
            that the module does not have.
        mismatched (list[str]): ``'key: checkpoint (..), model (..)'`` for
            keys whose shapes differ.
    """
    present: List[str]
    missing: List[str]
    unexpected: List[str]
    mismatched: List[str]


def compare_keys(expected: Mapping[str, Tensor], state_dict: Mapping,
                 prefix: str, under: str = '') -> KeyReport:
    """Compare the tensors a module expects with a checkpoint.

    Args:
        expected (Mapping[str, Tensor]): Key (relative to ``prefix``) ->
            the module's tensor.
        state_dict (Mapping): The (local) state dict being loaded.
        prefix (str): The module's key prefix in ``state_dict``.
        under (str): Only checkpoint keys starting with ``prefix + under``
            count as unexpected ones. Default: every key under ``prefix``.

    Returns:
        KeyReport: Present, missing, unexpected and mismatched keys.
    """
    found: Dict[str, object] = {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix + under)
    }
    present = sorted(k for k in expected if k in found)
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    mismatched = []
    for key in present:
        value = found[key]
        shape = tuple(getattr(value, 'shape', ()))
        if shape != tuple(expected[key].shape):
            mismatched.append(f'{prefix}{key}: checkpoint {shape}, model '
                              f'{tuple(expected[key].shape)}')
    return KeyReport(present, missing, unexpected, mismatched)


def module_of(key: str) -> str:
    """The module a key belongs to, one level deep: ``decoders.0`` for
    ``decoders.0.layers.1.linear1.weight``, ``q`` for ``q.weight``."""
    parts = key.split('.')
    if len(parts) > 2 and parts[1].isdigit():
        return '.'.join(parts[:2])
    return parts[0] if len(parts) > 1 else key


def modules_of(keys: Iterable[str]) -> List[str]:
    """The sorted modules of some keys (see :func:`module_of`)."""
    return sorted({module_of(k) for k in keys})
