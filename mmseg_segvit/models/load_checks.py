"""Refuse checkpoint loads that would leave part of a model untrained.

mmengine's ``load_from``, ``init_cfg=dict(type='Pretrained')`` and
``mmseg.apis.init_model`` load with ``strict=False``: weights the
checkpoint lacks, has under other names or with other shapes only produce
a log line, and those modules silently keep their random initialisation.
For the parts of SegViT that a checkpoint must carry (the ATM head besides
its class tensors, the Shrunk model's query up-sampling), the load-state
pre-hooks built on :func:`compare_keys` (:func:`check_loaded_head`,
:func:`check_loaded_qu`) turn that into an error naming the modules.
ATMHead's class tensors may be missing (a checkpoint of
``drop_class_weights``), but not made for another class count
(:func:`check_class_count`, whatever the prefix).

The other checks apply when the module is loaded as part of a larger model
(a non-empty key prefix, e.g. ``decode_head.``): loading a module on its
own (``head.load_state_dict(sd, strict=False)``, a backbone's
``pretrained`` weights) is an explicit call whose result lists the missing
keys.
"""
from typing import Dict, Iterable, List, Mapping, NamedTuple, Sequence, Tuple

from mmengine.logging import print_log
from torch import Tensor, nn

from ..checkpoints.layout import CONVERT_HINT, OFFICIAL_HEAD_KEY

__all__ = [
    'KeyReport', 'compare_keys', 'module_of', 'modules_of', 'key_problems',
    'CLASS_MODULES', 'check_class_count', 'check_fresh_modules',
    'check_loaded_head', 'check_loaded_qu'
]

#: ATMHead's modules whose shapes depend on the class count.
CLASS_MODULES = ('q', 'class_embed')


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


def compare_keys(expected: Mapping[str, Tensor],
                 state_dict: Mapping,
                 prefix: str,
                 under: str = '') -> KeyReport:
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


def key_problems(prefix: str,
                 missing: Sequence[str],
                 unexpected: Sequence[str],
                 mismatched: Sequence[str],
                 owner: str,
                 missing_note: str = '') -> List[str]:
    """What a checkpoint does wrong for a module, each a phrase that follows
    ``'the checkpoint '``: it lacks ``missing`` weights (then
    ``missing_note``), has ``unexpected`` ones ``owner`` does not have, or
    weights of ``mismatched`` shapes (see :class:`KeyReport`); keys are
    relative to ``prefix``."""
    problems = []
    if missing:
        problems.append(f'lacks {len(missing)} weight(s) of '
                        f'{modules_of(missing)} (e.g. {prefix}{missing[0]})'
                        f'{missing_note}')
    if unexpected:
        problems.append(
            f'has {len(unexpected)} weight(s) {owner} does not have, of '
            f'{modules_of(unexpected)} (e.g. {prefix}{unexpected[0]})')
    if mismatched:
        problems.append('has weights of other shapes: ' +
                        '; '.join(mismatched[:3]))
    return problems


def _in_modules(key: str, modules: Sequence[str]) -> bool:
    return any(key == m or key.startswith(m + '.') for m in modules)


def check_fresh_modules(head: nn.Module,
                        names: Sequence[str]) -> Tuple[str, ...]:
    """Check ``fresh_modules`` against the modules the head has.

    Raises:
        ValueError: A name that is no module of the head.
    """
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    keys = list(head.state_dict(keep_vars=True))
    unknown = [n for n in names if not any(_in_modules(k, [n]) for k in keys)]
    if unknown:
        raise ValueError(
            f'decode_head.fresh_modules names {unknown}, which the head does '
            f'not have; its modules are {modules_of(keys)}')
    return names


def check_class_count(head: nn.Module, state_dict: Mapping,
                      prefix: str) -> None:
    """Refuse ATMHead class tensors made for another number of classes.

    Raises:
        ValueError: Naming the checkpoint's class count, the model's and
            the two ways on (evaluate with that count, or drop the class
            weights to fine-tune).
    """
    for name, rows in (('q.weight', head.num_classes), ('class_embed.weight',
                                                        head.num_classes + 1)):
        weight = state_dict.get(prefix + name)
        if weight is not None and weight.shape[0] != rows:
            found = weight.shape[0] - (rows - head.num_classes)
            raise ValueError(
                f'checkpoint has {found} classes ({prefix}{name} of shape '
                f'{tuple(weight.shape)}) but the model has num_classes='
                f'{head.num_classes}. To evaluate it, set '
                f'decode_head.num_classes to {found}. To fine-tune it with '
                f'{head.num_classes} classes, drop its class weights first: '
                '`python -m mmseg_segvit.tools.drop_class_weights CKPT OUT`,'
                ' then load_from=OUT')


def check_loaded_head(head: nn.Module, state_dict: dict, prefix: str,
                      *args) -> None:
    """Load-state pre-hook of ATMHead: refuse a partial load of the head.

    Class tensors of another class count are refused whatever the prefix (a
    checkpoint trained with K' != K classes would otherwise load with shape-
    mismatch warnings only and evaluate with random class queries). Missing
    class tensors (``q``, ``class_embed``: a checkpoint of
    ``drop_class_weights``) and the modules of ``head.fresh_modules`` keep
    their initialisation, which is logged; any other missing, unexpected or
    differently shaped head weight is a ``ValueError`` that names the modules
    and says what to do. Loading the head on its own (empty ``prefix``) is not
    checked.
    """
    check_class_count(head, state_dict, prefix)
    if not prefix:
        return
    fresh = CLASS_MODULES + tuple(getattr(head, 'fresh_modules', ()))
    report = compare_keys(head.state_dict(keep_vars=True), state_dict, prefix)
    missing = [k for k in report.missing if not _in_modules(k, fresh)]
    name = prefix[:-1]
    if any(OFFICIAL_HEAD_KEY.match(k) for k in report.unexpected):
        raise ValueError(
            f'the checkpoint\'s {name} weights are in the layout of the '
            'official SegViT checkpoints (mmseg 0.24: input_proj_1, '
            f'decoder_1, ...), which {name} does not read (loading it would '
            f'leave {modules_of(missing)} at random initialisation): '
            f'{CONVERT_HINT}')
    if missing and not report.present:
        raise ValueError(
            f'the checkpoint has no weights for {name} (ATMHead): loading it '
            f'would leave {modules_of(missing)} at random initialisation. '
            'If the file holds backbone weights, load it with '
            'model.pretrained or backbone.init_cfg; to train these head '
            'modules from scratch on purpose, list them in '
            f'{name}.fresh_modules')
    problems = key_problems(
        prefix,
        missing,
        report.unexpected,
        report.mismatched,
        owner='the head',
        missing_note=', which would keep their random initialisation')
    if problems:
        hint = (f'the checkpoint was trained with another {name} '
                '(embed_dims, use_stages, num_layers, use_proj, in_channels);'
                ' use a checkpoint of this configuration')
        if missing and not report.unexpected and not report.mismatched:
            hint = ('to train them from scratch on purpose, list them in '
                    f'{name}.fresh_modules')
        raise ValueError('the checkpoint ' + ' and '.join(problems) +
                         f': {hint}')
    fresh_missing = [k for k in report.missing if k not in missing]
    if fresh_missing:
        print_log(
            f'{name}: {", ".join(modules_of(fresh_missing))} not in the '
            'checkpoint: they start from their initialisation',
            logger='current',
            level=30)


def check_loaded_qu(backbone: nn.Module, state_dict: dict, prefix: str,
                    *args) -> None:
    """Load-state pre-hook: refuse a whole-model checkpoint without QU.

    A checkpoint loaded into the segmentor (``load_from``, ``init_cfg``,
    ``init_model``; prefix ``backbone.``) must carry the query up-sampling
    weights (``qu.*``) with their shapes, else QU would keep its random
    initialisation. ViT weights loaded into the backbone itself
    (``pretrained``, empty prefix) are not checked: ShrunkViT initialises QU
    after them.
    """
    if not prefix:
        return
    expected = {
        f'qu.{k}': v
        for k, v in backbone.qu.state_dict(keep_vars=True).items()
    }
    report = compare_keys(expected, state_dict, prefix, under='qu.')
    if report.missing or report.unexpected or report.mismatched:
        what = []
        if report.missing:
            what.append(f'lacks {len(report.missing)} weight(s) of '
                        f'{modules_of(k[3:] for k in report.missing)}')
        if report.unexpected:
            what.append(f'has {len(report.unexpected)} QU weight(s) the '
                        'model does not have')
        if report.mismatched:
            what.append('has QU weights of other shapes: ' +
                        '; '.join(report.mismatched[:3]))
        raise ValueError(
            'the checkpoint ' + ' and '.join(what) + f' for {prefix}qu '
            '(the query up-sampling of the Shrunk model), which would keep '
            'random weights. Convert official Shrunk checkpoints with '
            'tools/convert_official_segvit.py; to start QU from scratch on '
            'top of ViT weights, give them as model.pretrained (or '
            'backbone.init_cfg) instead of load_from')
